"""Training and evaluation: SGD with momentum, warm-up + cosine, label smoothing, optional distillation.

Everything random is drawn from generators seeded by (run seed, generation, offspring, epoch), so an
epoch gives the same result whether the run went straight through or was killed and resumed.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from host.errors import HostError
from host.evolve.progress import bars_disabled

from contract.preprocess import PreprocessSpec
from host.evolve.data import CachedImages, augment_batch, normalize_batch
from host.evolve.distributed import World, sum_across


@dataclass
class TrainSettings:
    epochs: int  # passes over the training split
    batch_size: int = 64
    lr: float = 0.01  # peak learning rate (after warm-up), for this batch size (see effective_lr)
    momentum: float = 0.9
    weight_decay: float = 1e-4  # not applied to biases
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1  # share of all steps spent ramping the lr up linearly
    distill_weight: float = 0.0  # 0: plain labels; >0: mix in KL(teacher || student) at this weight
    distill_temperature: float = 2.0
    crop_scale: float = 0.5  # smallest area share of the random resized crop
    mixup_alpha: float = 0.0  # >0: every batch is a mixup (Zhang et al. 2018) at Beta(alpha, alpha), seeded
    distill_only: bool = False  # the loss is KL(teacher || student) alone: function matching (patient recovery)


REFERENCE_BATCH = 64  # the batch size the measured recipe's learning rate is given for (docs/benchmarks.md)
MIN_STEPS_PER_EPOCH = 10  # a small dataset gets a smaller batch rather than an epoch of one or two steps


class Diverged(Exception):
    """Training diverged: a step's loss was not finite or exploded (> ``divergence_bound``). Raised at once, before
    the step is applied, so nothing non-finite reaches the weights' next checkpoint or the lineage."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss {loss:.4g} at step {step}")
        self.step, self.loss = step, loss


def divergence_bound(num_classes: int) -> float:
    """The loss (nats) beyond which training counts as diverged: 20 x ln N, at least 50. A classifier starts
    near ln N (uniform outputs) and only falls; the issue's diverging run passed 815 before it went to NaN."""
    return max(50.0, 20.0 * math.log(max(2, num_classes)))


def effective_batch(n_images: int, batch_size: int) -> int:
    """The batch actually used: ``batch_size``, made smaller for a small training split so that an epoch has at
    least MIN_STEPS_PER_EPOCH steps (90 images at batch 64 gave one step an epoch: a chance-level ancestor after
    3 epochs, issue 15), never below 2."""
    return max(2, min(batch_size, n_images // MIN_STEPS_PER_EPOCH))


def effective_lr(lr: float, batch_size: int) -> float:
    """The peak rate for ``batch_size``: ``lr`` is given for REFERENCE_BATCH and scales linearly with the batch
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 2.1)."""
    return lr * batch_size / REFERENCE_BATCH


def derive_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (run seed, generation, offspring, epoch ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA where there is one), ``cpu``, ``cuda`` or ``cuda:N``; HostError naming what is here when a
    CUDA device is asked for and missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HostError(f"--device {name}: this torch sees no CUDA GPU (a CPU build, or no driver); give "
                            "--device cpu, or install a CUDA torch where there is a GPU")
        if device.index is not None and device.index >= count:
            raise HostError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def make_optimizer(model: nn.Module, settings: TrainSettings, steps_total: int):
    """SGD with Nesterov momentum (no weight decay on biases) and its per-step schedule: linear warm-up over
    ``warmup_fraction`` of ``steps_total`` steps to ``settings.lr``, then a cosine to 0 (Loshchilov & Hutter,
    SGDR, 2017). Returns (optimizer, LambdaLR); call the scheduler once per step."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": settings.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=settings.lr, momentum=settings.momentum, nesterov=True)
    warmup = max(1, int(settings.warmup_fraction * steps_total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps_total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_images`` at ``batch_size`` (the last partial batch dropped), at least 1."""
    return max(1, n_images // batch_size)  # the last partial batch is dropped (BatchNorm-free, but keeps steps even)


# batches made ahead on a thread. On 2 cores the thread competes with the compute's own threads: a full
# Imagenette epoch at 112 px ran at 0.70 of pure compute with it and 0.78 made serially, 3 of 3 rounds
# (bench/step_phases.py --images 8448, docs/benchmarks.md section 8), so 2-core machines make them serially
PREFETCH_DEPTH = 2 if (os.cpu_count() or 1) > 2 else 0


def prefetch(items, bar: tqdm, depth: int = 2):
    """Yield ``items`` made on a background thread, ``depth`` ahead: the next batch's gather, normalisation
    and augmentation (torch ops, which release the GIL) overlap the current step. Ticks ``bar`` per item."""
    if depth <= 0:
        for item in items:
            yield item
            bar.update(1)
        bar.close()
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in items:
                slots.put(item)
        except BaseException as error:  # handed to the consumer, raised there
            slots.put(error)
        slots.put(done)

    thread = threading.Thread(target=produce, name="batches", daemon=True)
    thread.start()
    while True:
        item = slots.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
        bar.update(1)
    thread.join()
    bar.close()


def train_one_epoch(model: nn.Module, data: CachedImages, spec: PreprocessSpec, optimizer, scheduler,
                    settings: TrainSettings, seed: int, device: torch.device, teacher: nn.Module | None = None,
                    desc: str = "train", world: World = World()) -> dict:
    """One pass over ``data`` in a seeded order with seeded augmentation. Returns loss, accuracy, images/s.

    Under torchrun every rank draws the same order and trains on its slice of each global batch of
    ``settings.batch_size`` images (so the schedule and the learning rate mean the same at any world size).
    """
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).numpy()
    generator = torch.Generator().manual_seed(derive_seed(seed, world.rank))  # augmentation, per rank
    torch.manual_seed(derive_seed(seed, world.rank))  # dropout
    model.train()
    network = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel
        network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if teacher is not None:
        teacher.eval()
    n_steps = steps_per_epoch(len(data), settings.batch_size)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    memory_format = torch.channels_last  # faster on CUDA and, with oneDNN, on CPU too (1.7x measured here)
    total_loss, correct, seen = 0.0, 0, 0
    bound = divergence_bound(int(getattr(getattr(model, "genome", None), "num_classes", 2)))
    start = time.perf_counter()
    bar = tqdm(total=n_steps, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
               disable=bars_disabled(not world.is_main))  # a terminal only, none with --quiet (host/evolve/progress.py)

    if settings.distill_only and teacher is None:
        raise HostError("distillation alone (the patient recovery) needs a teacher")
    mixing = np.random.default_rng(derive_seed(seed, world.rank, 4242))  # mixup's shares and partners

    def batches():
        for step in range(n_steps):
            index = np.sort(order[step * settings.batch_size:(step + 1) * settings.batch_size][world.rank::world.size])
            images = torch.from_numpy(np.asarray(data.images[index])).to(device, non_blocking=True)
            labels = torch.from_numpy(data.labels[index]).to(device, non_blocking=True)
            inputs = augment_batch(normalize_batch(images, spec), generator, scale=(settings.crop_scale, 1.0))
            if settings.mixup_alpha > 0:
                inputs = mixup(inputs, mixing, settings.mixup_alpha)
            yield labels, inputs.contiguous(memory_format=memory_format)

    for labels, inputs in prefetch(batches(), bar, PREFETCH_DEPTH):
        with amp:
            logits = network(inputs)
            if not settings.distill_only:
                loss = F.cross_entropy(logits, labels, label_smoothing=settings.label_smoothing)
            if teacher is not None and (settings.distill_weight > 0 or settings.distill_only):
                with torch.no_grad():
                    teacher_logits = teacher(inputs)  # the same view as the student's (function matching)
                t = settings.distill_temperature
                distill = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                                   reduction="batchmean", log_target=True) * t * t
                loss = distill if settings.distill_only else \
                    (1 - settings.distill_weight) * loss + settings.distill_weight * distill
        value = float(loss.detach())
        # every rank decides on the mean over ranks, so all raise together (one alone would leave the others
        # waiting in the gradient all-reduce)
        mean = sum_across(world, value)[0] / world.size if world.distributed else value
        if not math.isfinite(mean) or mean > bound:  # before the step: the weights stay as they were
            bar.close()
            raise Diverged(bar.n, mean)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        total_loss += value * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        if bar.n % 10 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    elapsed = time.perf_counter() - start
    total_loss, correct, seen = sum_across(world, total_loss, correct, seen)
    return {"loss": total_loss / max(1, seen), "train_top1": correct / max(1, seen), "seconds": elapsed,
            "images_per_second": seen / max(elapsed, 1e-9)}


def mixup(inputs: torch.Tensor, rng: np.random.Generator, alpha: float) -> torch.Tensor:
    """A batch blended with a shuffled copy of itself, x' = l x + (1 - l) x[perm], l ~ Beta(alpha, alpha) drawn
    from ``rng`` (Zhang et al., ICLR 2018; with distillation alone, the teacher's answer on x' is the target,
    Beyer et al., CVPR 2022). N x C x H x W in and out."""
    share = float(rng.beta(alpha, alpha))
    partners = torch.from_numpy(rng.permutation(len(inputs))).to(inputs.device)
    return share * inputs + (1.0 - share) * inputs[partners]


@torch.no_grad()
def predict(model: nn.Module, data: CachedImages, spec: PreprocessSpec, device: torch.device,
            batch_size: int = 256) -> torch.Tensor:
    """Logits for every image of ``data``, preprocessed exactly as on the device."""
    model.eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        images = torch.from_numpy(np.array(data.images[start:start + batch_size])).to(device)
        outputs.append(model(normalize_batch(images, spec)).float().cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0, 1)


def evaluate(model: nn.Module, data: CachedImages, spec: PreprocessSpec, device: torch.device) -> dict:
    """Top-1 and top-5 accuracy of ``model`` on ``data`` (centre images, no augmentation) as fractions in [0, 1],
    and the counts behind them: ``{"top1": float, "top5": float, "val_counts": {"support": [images of each
    class], "correct": [of them classified right], "predicted": [images answered as each class]}}`` (top-5 is
    top-k with k = min(5, classes)). host/run/acceptance.py judges in these counts, not in rounded fractions."""
    logits = predict(model, data, spec, device)
    labels = torch.from_numpy(data.labels)
    classes = logits.shape[1]
    k = min(5, classes)
    topk = logits.topk(k, dim=1).indices
    right = topk[:, 0] == labels
    counts = {"support": torch.bincount(labels, minlength=classes).tolist(),
              "correct": torch.bincount(labels[right], minlength=classes).tolist(),
              "predicted": torch.bincount(topk[:, 0], minlength=classes).tolist()}
    return {"top1": float(right.float().mean()), "top5": float((topk == labels[:, None]).any(1).float().mean()),
            "val_counts": counts}


def compute_throughput(model: nn.Module, batch_size: int, image_size: int, device: torch.device,
                       steps: int = 20) -> float:
    """Images/s of forward + backward + SGD step on a batch already in memory: the ceiling for training."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    inputs = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, model.genome.num_classes, (batch_size,), device=device)
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def set_peak_lr(optimizer, scheduler, peak: float) -> None:
    """Make ``peak`` the schedule's peak rate from the current step on (the warm-up + cosine shape kept): a
    rolled-back epoch retried at a lower rate, or a run resumed with a lower --lr."""
    scheduler.base_lrs = [peak for _ in scheduler.base_lrs]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = peak
        group["lr"] = peak * factor(max(0, scheduler.last_epoch))
