"""Peer comparison: the evolution against what a user would otherwise run, at equal budget, one command.

    python bench/peers.py                     # --scale small (32 px, 2 steps x 1 epoch per size): ~30 min here, shared CPU
    python bench/peers.py --scale full        # 112 px, 3 + 2 steps of 4 epochs (docs/benchmarks.md section 5)

From ONE ancestor (SqueezeNet v1.1 from the ImageNet weights, conv10 -> 10 classes, trained once as a user
would and cached under runs/peers/SCALE/ancestor.pt, reused by every method), three ways to a model of at
most 0.95 MB and then at most 0.49 MB (the second continues from the first, for every method):

  (a) torch-pruning: Torch-Pruning's MetaPruner with L1 magnitude importance (p=1), local (the same ratio in
      every layer), conv10 ignored, no round_to (its default; see TP_ROUND_TO); its dependency graph couples
      the fire concat [expand1x1 | expand3x3] to the next squeeze. The ratio of each step is the smallest
      that makes the pruned net meet the step's size.
  (b) uniform: every layer keeps the same share of its filters, its strongest by --strength (host/evolve/surgery.py's
      cluster strengths), no evolution; the share found by bisection, as in (a).
  (c) evolution: this project's heredity model (host/evolve/synthesis.py: lambda solved so the expected offspring
      is R x the parent, then a seeded draw; the first of up to 16 draws that fits the step's size).
  (d) selection: (c) with selection (host/evolve/selection.py, host-evolve --candidates): the first CANDIDATES draws
      that fit, and the heredity model's most likely offspring (strongest_offspring) when it fits, each scored
      by fidelity to the parent, KL(parent || candidate) on PROXY_IMAGES fixed training images; the most
      faithful is trained. The scoring's forward passes count in the budget (a third of a training image each).

Every method ranks filters by --strength (filter: the paper's sum |w| of the filter; consumer: the weights that
read it; Torch-Pruning keeps its own group L1) and passes host-evolve's parent-relative acceptance (not its
--max-total-drop, which would stop a method rather than compare it): a step that lands near chance or
more than --max-drop below its parent is drawn again at a milder R (up to --redraws times), its epochs counted in
the budget.

Everything else is the same for the four: the step sizes (geometric from the ancestor to the target, one
per step), the training after every step (host/evolve/train.py: SGD, warm-up + cosine, label smoothing, crops,
distillation from --teacher: the previous step's model, or the ancestor), the epochs and the recovery fine-tune at
each size (--recovery-epochs, the scale's by default: 4 at the gentle scales; 20 is the presets' now), the data split (10 % of every class held out,
seed 0), the export (host/evolve/export.py, ONNX opset 13, parity-checked) and the measurement (device-bench's
ONNX Runtime CPU path at batch 1 and 8, each model alternately with the ancestor in this process, 2 rounds;
the ratio is the median of the per-round ratios, so this machine's drift cancels).

Writes runs/peers/SCALE/{peers.json (also as peers-METHODS-STRENGTH.json, for --merge), peers.png,
<method>-<MB>/model.onnx}; prints a markdown table. Issue 15's fight in one command (docs/benchmarks.md 9h):

    python bench/peers.py --scale gentle --strength consumer --ancestor RUN/gen-00/offspring-0.pt
Resumable: every finished step is kept (runs/peers/SCALE/<method>-<MB>-step<k>.pt) and skipped on a rerun.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from contract.generation_files import OFFSPRING_WEIGHTS, offspring_weights  # noqa: E402,F401
from contract.generation_files import MODEL_ONNX  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"

METHODS = ("torch-pruning", "uniform", "evolution", "selection")
CANDIDATES, PROXY_IMAGES = 8, 512  # (d) selection: draws scored per step, fixed training images they are scored on
SIZES_MB = (0.95, 0.49)
SCALES = {
    # what ran in this session (docs/benchmarks.md): tiny images, 2 steps of 1 epoch per size, on a 2-core
    # CPU shared with six other jobs (an epoch of Imagenette at 64 px would have taken ~6 min there)
    "small": {"image_size": 32, "ancestor_epochs": 2, "steps": 2, "epochs_per_step": 1},
    # 64 px, 3 steps of 1 epoch per size: ~40 min on a quiet 2-core CPU (estimate, not run)
    "medium": {"image_size": 64, "ancestor_epochs": 3, "steps": 3, "epochs_per_step": 1},
    # the evolve presets' resolution and per-step schedule (4 epochs: warm-up + cosine); 3 steps to 0.95 MB,
    # 2 more to 0.49 MB. The first full run, 8 one-epoch steps per size, collapsed mid-epoch more than once
    # (the evolution's second step: 58 % -> 29 % train top-1 as the rate peaked 13 steps in; uniform 85 -> 78 %),
    # so it measured the schedule, not the methods (docs/benchmarks.md section 5)
    "full": {"image_size": 112, "ancestor_epochs": 6, "steps": (3, 2), "epochs_per_step": 4},
    # issue 15's fair fight: a gentle schedule for every method (steps of about R 0.89 on size to 0.95 MB,
    # 0.85 to 0.49 MB, widths in multiples of 8; the presets step R 0.93 on MACs in 16s), 4 epochs each, distillation from the ancestor with --teacher ancestor, a 4-epoch recovery at each size);
    # 56 epochs a method: about 1 h alone on one thread of this CPU, 1 h 30 two side by side (docs/benchmarks.md 9g)
    "gentle": {"image_size": 112, "ancestor_epochs": 6, "steps": (10, 4), "epochs_per_step": 4, "recovery_epochs": 4},
    # the same shape at 64 px with 1-epoch steps: what fits a session on a shared 2-core CPU (about 1 h 30)
    "gentle-64": {"image_size": 64, "ancestor_epochs": 3, "steps": (3, 2), "epochs_per_step": 1, "recovery_epochs": 1},
    # the same shape at the targets' 112 px in 1-epoch steps (about 12 min a method, two at a time with
    # OMP_NUM_THREADS=1): steps of about R 0.69 on size are too harsh here. A trained 112 px ancestor keeps
    # 25 % top-1 after a 10 % cut of every layer by filter L1 (bench/cut_sensitivity.py), one epoch does not
    # bring it back, and uniform and evolution ended near chance (docs/benchmarks.md section 9f): a record of
    # what a reduced scale must not do, not a comparison
    "gentle-112": {"image_size": 112, "ancestor_epochs": 6, "steps": (3, 2), "epochs_per_step": 1, "recovery_epochs": 1},
    # seconds: the tests' scale (use with a small --data such as cifar10-mini)
    "smoke": {"image_size": 32, "ancestor_epochs": 1, "steps": 2, "epochs_per_step": 1},
}
TRAIN = {"lr": 0.01, "crop_scale": 0.5, "distill_weight": 0.5, "batch_size": 64}
ROUND_TO, MIN_FILTERS = 8, 4
# what uniform, evolution and selection rank filters by (host/surgery.cluster_strengths; --strength): "filter" is
# the paper's sum |w| of the filter, "consumer" the weights that read it (Torch-Pruning keeps its own group L1)
STRENGTH = "filter"
# Torch-Pruning as a user runs it: no round_to. Its round_to FLOORS the kept count to a multiple, so any cut
# of a 16-wide fire squeeze leaves 8: at 112 px one 13 % step with round_to=8 left 15.5 % top-1 right after
# pruning against 55.4 % without it (runs/peers-full, 2026-11-28); uniform and evolution round to nearest/up
TP_ROUND_TO = None
# acceptance (host-evolve's defaults, host/evolve/config.py): a step more than MAX_DROP below its parent or near chance
# is drawn again at a milder R, up to REDRAWS times (--max-drop 1 turns it off)
MAX_DROP, REDRAWS = 0.10, 2
REDRAWS_SCORED = 8  # --score-steps looks for this many redraw files of a step
UNIFORM_SLACK = 0.9  # uniform: a share that lands below this fraction of the step's target is redone to the filter
PER_RUN = ("strength", "max_drop", "redraws")  # --merge: what may differ between the runs it puts side by side


# -- the three ways to a smaller net (pure functions of a trained parent and a parameter budget) -----------

def widths_params(num_classes: int, widths: dict) -> int:
    from host.evolve.genome import Genome
    return Genome.from_layer_widths(num_classes, widths).params


def uniform_kept(parent, share: float, round_to: int = ROUND_TO, min_filters: int = MIN_FILTERS) -> dict:
    """Every layer keeps share x width of its filters, rounded to the nearest multiple of ``round_to`` (as
    MobileNet's width multiplier rounds; ceil would move every layer at once at the same shares), at least
    ``min_filters`` and ``round_to``; the strongest ones (sum |w|)."""
    from host.evolve.surgery import cluster_strengths
    kept = {}
    for name, strengths in cluster_strengths(parent, STRENGTH).items():
        width = len(strengths)
        count = int(round(share * width / round_to)) * round_to if round_to > 1 else int(round(share * width))
        count = min(width, max(count, min_filters, round_to))
        kept[name] = np.sort(np.argsort(-strengths, kind="stable")[:count])
    return kept


def bisect_largest(fits, low: float = 0.0, high: float = 1.0, iterations: int = 20) -> float:
    """The largest x in [low, high] with fits(x) true (fits is monotone: true below a threshold)."""
    if fits(high):
        return high
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def uniform_shrink(parent, target_params: int, round_to: int = ROUND_TO, min_filters: int = MIN_FILTERS):
    """(b) The same share of every layer, strongest filters kept, as large as fits ``target_params``."""
    from host.evolve.surgery import inherit
    classes = parent.genome.num_classes

    def params(share: float) -> int:
        return widths_params(classes, {k: len(v) for k, v in uniform_kept(parent, share, round_to, min_filters).items()})

    share = bisect_largest(lambda s: params(s) <= target_params)
    if round_to > 1 and params(share) < UNIFORM_SLACK * target_params:
        # every layer moves by a whole round_to at once, so the share can jump far below the target (at 0.49 MB
        # 142k -> 80k parameters for a 122k target, runs/peers-gentle): then widths to the filter, as Torch-Pruning
        return uniform_shrink(parent, target_params, 1, min_filters)
    return inherit(parent.cpu(), uniform_kept(parent, share, round_to, min_filters))


def evolution_shrink(parent, target_params: int, seed: int, image_size: int, round_to: int = ROUND_TO,
                     min_filters: int = MIN_FILTERS, draws: int = 16):
    """(c) One generation of the heredity model with R = target / parent; the first draw that fits
    (the expectation is R x the parent; a single draw varies by a few %), else the smallest drawn."""
    from host.evolve.surgery import cluster_strengths, inherit
    from host.evolve.synthesis import sample_offspring, solve_lambda
    from host.evolve.train import derive_seed
    strengths = cluster_strengths(parent, STRENGTH)
    classes = parent.genome.num_classes
    env_factor = min(1.0, target_params / parent.genome.params)
    lam = solve_lambda(strengths, classes, env_factor, kind="params", image_size=image_size,
                       min_filters=min_filters, round_to=round_to)
    smallest = None
    for draw in range(draws):
        rng = np.random.default_rng(derive_seed(seed, draw, 12345))
        kept = sample_offspring(strengths, lam, rng, min_filters=min_filters, round_to=round_to)
        params = widths_params(classes, {k: len(v) for k, v in kept.items()})
        if params <= target_params:
            return inherit(parent.cpu(), kept)
        if smallest is None or params < smallest[0]:
            smallest = (params, kept)
    return inherit(parent.cpu(), smallest[1])


def as_squeezenet(pruned, num_classes: int, dropout: float):
    """A host.evolve.model.SqueezeNet (genome and all) with the weights of a net whose convs were cut in place."""
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet
    widths = {name: conv.out_channels for name, conv in pruned.named_layers().items() if name != "conv10"}
    model = SqueezeNet(Genome.from_layer_widths(num_classes, widths), dropout=dropout)
    model.load_state_dict(pruned.state_dict())
    return model


def torch_pruning_shrink(parent, target_params: int, image_size: int, round_to: int | None = TP_ROUND_TO):
    """(a) Torch-Pruning, L1 magnitude, the same ratio in every layer, as large as fits ``target_params``."""
    import torch
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise SystemExit("torch-pruning is not installed: pip install 'squishednets[bench]'") from error
    classes, dropout = parent.genome.num_classes, parent.classifier[0].p
    example = torch.zeros(1, 3, image_size, image_size)

    def prune(ratio: float):
        model = copy.deepcopy(parent).cpu().eval()
        if ratio > 0:
            pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                          pruning_ratio=ratio, ignored_layers=[model.conv10], round_to=round_to)
            pruner.step()
        return as_squeezenet(model, classes, dropout)

    # params against the ratio is a staircase (round_to, coupled groups), and every trial traces the graph
    # (seconds here): start near the uniform share that fits, then step the ratio up until the pruned net fits
    share = bisect_largest(lambda x: widths_params(classes, {k: len(v) for k, v in uniform_kept(
        parent, x, round_to or 1).items()}) <= target_params)
    best = None
    for ratio in np.clip(1.0 - share + np.arange(-0.06, 0.96, 0.005 if round_to is None else 0.015), 0.0, 0.97):
        candidate = prune(float(ratio))
        if candidate.genome.params <= target_params:
            if best is not None and best.genome.params >= candidate.genome.params:
                break  # past the best fit: the next ones are only smaller
            best = candidate
    return best if best is not None else prune(0.97)


def selection_shrink(parent, target_params: int, seed: int, image_size: int, data, candidates: int = CANDIDATES,
                     round_to: int = ROUND_TO, min_filters: int = MIN_FILTERS) -> tuple:
    """(d) The most faithful to the parent of the first ``candidates`` heredity draws that fit (and the heredity
    model's most likely offspring when it fits); returns (model, proxy cost in training-image equivalents)."""
    import torch
    from host.evolve.selection import FORWARD_SHARE, ProxySet, fidelity, logits_on, strongest_offspring
    from host.evolve.surgery import cluster_strengths, inherit
    from host.evolve.synthesis import sample_offspring, solve_lambda
    from host.evolve.train import derive_seed
    strengths = cluster_strengths(parent, STRENGTH)
    classes = parent.genome.num_classes
    env_factor = min(1.0, target_params / parent.genome.params)
    lam = solve_lambda(strengths, classes, env_factor, kind="params", image_size=image_size,
                       min_filters=min_filters, round_to=round_to)
    pool = [strongest_offspring(strengths, lam, min_filters=min_filters, round_to=round_to)]
    for draw in range(16 * candidates):
        if len(pool) > candidates:
            break
        pool.append(sample_offspring(strengths, lam, np.random.default_rng(derive_seed(seed, draw, 12345)),
                                     min_filters=min_filters, round_to=round_to))
    fits = [kept for kept in pool if widths_params(classes, {k: len(v) for k, v in kept.items()}) <= target_params]
    if not fits:  # nothing fits: the evolution's own fallback (the smallest of its draws)
        return evolution_shrink(parent, target_params, seed, image_size, round_to, min_filters), 0.0
    proxy = ProxySet.draw(data.train, PROXY_IMAGES, derive_seed(seed, 777))
    cpu = torch.device("cpu")
    reference = logits_on(parent.cpu(), data.train, proxy.score, data.spec, cpu)
    scored = [(fidelity(logits_on(inherit(parent.cpu(), kept), data.train, proxy.score, data.spec, cpu), reference),
               kept) for kept in fits]
    best = min(scored, key=lambda item: item[0])[1]
    return inherit(parent.cpu(), best), (len(fits) + 1) * len(proxy.score) * FORWARD_SHARE


def shrink(method: str, parent, target_params: int, image_size: int, seed: int, data=None) -> tuple:
    """(the smaller model, the training-image equivalents spent choosing it)"""
    if method == "torch-pruning":
        return torch_pruning_shrink(parent, target_params, image_size), 0.0
    if method == "uniform":
        return uniform_shrink(parent, target_params), 0.0
    if method == "evolution":
        return evolution_shrink(parent, target_params, seed, image_size), 0.0
    if method == "selection":
        return selection_shrink(parent, target_params, seed, image_size, data)
    raise ValueError(method)


def steps_for(scale: dict, size_index: int) -> int:
    """The steps to the ``size_index``-th size: one count for every size, or one per size."""
    steps = scale["steps"]
    return steps[size_index] if isinstance(steps, (tuple, list)) else steps


def step_targets(start_params: int, target_params: int, steps: int) -> list[int]:
    """Geometric steps from ``start_params`` down to ``target_params`` (the last is the target itself)."""
    ratio = target_params / start_params
    return [int(start_params * ratio ** ((k + 1) / steps)) for k in range(steps - 1)] + [int(target_params)]


# -- training, export, measurement (the same for every method) ----------------------------------------------

def train(model, teacher, data, epochs: int, seed: int, desc: str, bar=None):
    import torch
    from host.evolve.train import TrainSettings, make_optimizer, steps_per_epoch, train_one_epoch
    cpu = torch.device("cpu")
    settings = TrainSettings(epochs=epochs, batch_size=TRAIN["batch_size"], lr=TRAIN["lr"],
                             crop_scale=TRAIN["crop_scale"],
                             distill_weight=TRAIN["distill_weight"] if teacher is not None else 0.0)
    model = model.to(cpu).to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher = copy.deepcopy(teacher).to(cpu).to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, settings, epochs * steps_per_epoch(len(data.train), settings.batch_size))
    for epoch in range(epochs):
        train_one_epoch(model, data.train, data.spec, optimizer, scheduler, settings, seed + epoch, cpu, teacher,
                        desc=f"{desc} epoch {epoch + 1}/{epochs}")
        if bar is not None:
            bar.update(1)
    return model.to(memory_format=torch.contiguous_format)


def save_model(model, path: Path, extra: dict) -> None:
    """A host-evolve model file (host/evolve/checkpoints.py: the one format), with the step's extras."""
    from host.evolve.checkpoints import save_model as save
    save(model, path, model.classifier[0].p, **extra)


def load_model(path: Path):
    """A step file: the model and the file's plain contents (its extras: key, top1, parent, ...)."""
    from host.evolve.checkpoints import load_model_file
    return load_model_file(path, "cpu")


class Data:
    def __init__(self, root: str, image_size: int, cache: Path, seed: int = 0, val_fraction: float = 0.1):
        from contract.preprocess import PreprocessSpec
        from host.evolve.data import cache_split, scan_folder
        split = scan_folder(root, val_fraction, seed)
        self.spec = PreprocessSpec.square(image_size)
        self.labels = split.labels
        self.train = cache_split(split.train, self.spec, cache, "train")
        self.val = cache_split(split.val, self.spec, cache, "val")


def top1(model, data) -> float:
    import torch
    from host.evolve.train import evaluate
    return evaluate(model, data.val, data.spec, torch.device("cpu"))["top1"]


def export(model, folder: Path, data, label: str) -> Path:
    from host.evolve.evolution import parity_images
    from host.evolve.export import export_generation
    export_generation(model.cpu().eval(), folder, spec=data.spec, labels=data.labels, generation=0,
                      parity_images=parity_images(data), extra_card={"peer": label})
    return folder / MODEL_ONNX


def ort_speed(path: Path, seconds: float) -> dict:
    from device.bench import bench_model
    result = bench_model(str(path), backend="onnxruntime", precision="fp32", batches=(1, 8), seconds=seconds)
    return {r["batch"]: r["throughput_ips"] for r in result["results"]}


def against_ancestor(ancestor: Path, model: Path, rounds: int = 2, seconds: float = 1.5) -> dict:
    """Ancestor and model alternately, batch 1 and 8: medians of the absolute speeds and of the per-round ratios."""
    mine, theirs = [], []
    for _ in range(rounds):
        theirs.append(ort_speed(ancestor, seconds))
        mine.append(ort_speed(model, seconds))
    out = {}
    for batch in (1, 8):
        out[f"b{batch}_ips"] = float(np.median([m[batch] for m in mine]))
        out[f"b{batch}_vs_ancestor"] = float(np.median([m[batch] / t[batch] for m, t in zip(mine, theirs)]))
    return out


# -- the comparison ---------------------------------------------------------------------------------------

def ancestor_model(data, scale: dict, pretrained: str, folder: Path, seed: int, bar, given: str | None = None):
    """Trained once, then reused by every method and every rerun (keyed by its settings).

    ``given``: a host-evolve model file instead (``RUN/gen-00/offspring-0.pt`` of a run with the same image
    size, data, seed and recipe: its validation split is this bench's, both come from host.evolve.data.scan_folder
    with the same fraction and seed); scored here on this bench's split, its training time unknown (nan).
    """
    import torch
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet, load_pretrained
    from host.evolve.train import derive_seed
    if given:
        from host.evolve.checkpoints import load_ancestor
        model = load_ancestor(given, data.labels, 0.5)
        bar.update(scale["ancestor_epochs"])
        return model, top1(model, data), float("nan")
    path = folder / "ancestor.pt"
    key = {"image_size": scale["image_size"], "epochs": scale["ancestor_epochs"], "seed": seed, **TRAIN}
    if path.is_file():
        model, state = load_model(path)
        if state.get("key") == key:
            bar.update(scale["ancestor_epochs"])
            return model, state["top1"], state["train_seconds"]
    model = SqueezeNet(Genome.squeezenet1_1(len(data.labels)))
    torch.manual_seed(derive_seed(seed, 0, 0, 999))
    model.reset_parameters()
    load_pretrained(model, pretrained)
    start = time.time()
    model = train(model, None, data, scale["ancestor_epochs"], derive_seed(seed, 0), "ancestor", bar)
    seconds = time.time() - start
    score = top1(model, data)
    save_model(model, path, {"key": key, "top1": score, "train_seconds": seconds})
    return model, score, seconds


def run_method(method: str, ancestor, data, scale: dict, folder: Path, seed: int, bar,
               teacher: str = "parent", ancestor_top1: float | None = None, max_drop: float = MAX_DROP,
               redraws: int = REDRAWS) -> list[dict]:
    """The method from the ancestor to each size in turn; per size: model, top-1, size, MACs, epochs.
    ``teacher``: distil from the previous step's model ("parent") or from the ancestor ("ancestor").

    Acceptance, host-evolve's rule (host/steering.collapse_reason, milder_env_factor) for every method alike:
    a trained step near chance or more than ``max_drop`` below its parent is drawn again, up to ``redraws``
    times, each redraw's epochs counted in the budget: at a milder R (R_k = 1 - (1 - R) / 2^k of the step's
    size ratio), or on a size's last step at the same size with new seeds (a milder R would miss the size);
    the most accurate attempt goes on (host-evolve would stop there: the row says ``collapsed``), and the
    remaining steps of that size are re-spaced from it. ``max_drop`` 1 turns it off (the runs before
    2026-12-01).

    Resumable: every step file records the file it was trained from ("parent"); one whose parent is no longer
    the one chosen (a step redrawn after it was trained, on a rerun with acceptance) is trained again. It also
    records the strength, teacher and recovery epochs it was made with: a rerun with others in the same folder is
    refused."""
    from tqdm import tqdm
    from host.evolve.steering import collapse_reason, milder_env_factor
    from host.evolve.train import derive_seed
    if redraws < 0:
        raise ValueError(f"redraws = {redraws}: give 0 or more")
    tqdm_write = tqdm.write
    parent, rows, spent, extra_epochs = ancestor, [], 0.0, 0
    parent_name = default_name = "ancestor"  # the file the current parent is, and what a run without redraws had
    parent_top1 = ancestor_top1 if ancestor_top1 is not None else top1(ancestor, data)
    recovery = scale.get("recovery_epochs", 0)
    classes = ancestor.genome.num_classes
    redrawn, collapsed = [], []
    made_with = {"strength": STRENGTH if method != "torch-pruning" else None, "teacher": teacher,  # in every step file
                 "recovery_epochs": recovery}

    def load_if_current(path: Path, default_parent: str):
        """(model, state) of a step file trained from the current parent; None when absent or stale."""
        if not path.is_file():
            return None
        child, state = load_model(path)
        other = {k: state[k] for k in made_with if k in state and state[k] != made_with[k]}  # older files: neither
        if other:
            raise SystemExit(f"bench/peers.py: {path} was trained with {other}, this run asks for "
                             f"{ {k: made_with[k] for k in other} }: give this run its own --out")
        if state.get("parent", default_parent) != parent_name:
            tqdm_write(f"{path.name}: trained from {state.get('parent', default_parent)}, now {parent_name}: trained again")
            return None
        return child, state

    for size_index, size_mb in enumerate(SIZES_MB):
        target = int(size_mb * 1e6 / 4)
        steps = steps_for(scale, size_index)
        targets = step_targets(parent.genome.params, target, steps)
        for step in range(steps):
            step_target = targets[step]
            ratio = min(1.0, step_target / parent.genome.params)
            attempts = []
            for attempt in range(redraws + 1):
                suffix = "" if attempt == 0 else f"-redraw{attempt}"
                path = folder / f"{method}-{size_mb:.2f}-step{step}{suffix}.pt"
                loaded = load_if_current(path, default_name)
                if loaded is not None:
                    child, state = loaded
                    if "top1" not in state:  # a step file from before acceptance: scored once, kept with it
                        state = {"proxy_images": state.get("proxy_images", 0.0), "top1": top1(child, data),
                                 "parent": parent_name, **made_with}
                        save_model(child, path, state)
                    bar.update(scale["epochs_per_step"])
                else:
                    last = step == steps - 1
                    aim = step_target if attempt == 0 or last else \
                        int(parent.genome.params * milder_env_factor(ratio, attempt))
                    tag = [] if attempt == 0 else [1000 + attempt]  # attempt 0: the seeds of the runs before
                    child, cost = shrink(method, parent, aim, scale["image_size"], derive_seed(seed, size_index, step, *tag),
                                         data)
                    mentor = ancestor if teacher == "ancestor" else parent
                    child = train(child, mentor, data, scale["epochs_per_step"],
                                  derive_seed(seed, size_index, step, 7, *tag),
                                  f"{method} {size_mb:.2f} MB step {step + 1}/{steps}{suffix}", bar)
                    state = {"proxy_images": cost, "top1": top1(child, data), "aim_params": aim, "parent": parent_name,
                             **made_with}
                    save_model(child, path, state)
                spent += state.get("proxy_images", 0.0)
                extra_epochs += scale["epochs_per_step"] if attempt else 0
                attempts.append((state["top1"], path.name, child))
                verdict = collapse_reason(step + 1, state["top1"], parent_top1, classes, max_drop)
                if verdict is None:
                    break
                tqdm_write(f"{method} {size_mb:.2f} MB step {step + 1}: {verdict}"
                           + (f"; redrawing ({attempt + 1} of {redraws})" if attempt < redraws else
                              "; no redraw left, the most accurate attempt goes on"))
            if len(attempts) > 1:
                redrawn.append(f"{size_mb:.2f} step {step + 1} x{len(attempts) - 1}")
            if verdict is not None:
                collapsed.append(f"{size_mb:.2f} step {step + 1}")
            parent_top1, parent_name, parent = max(attempts, key=lambda a: a[0])
            default_name = f"{method}-{size_mb:.2f}-step{step}.pt"
            if parent_name != default_name and step < steps - 1:  # a milder step: the rest re-spaced from it
                targets = targets[:step + 1] + step_targets(parent.genome.params, target, steps - step - 1)
        if recovery:  # the presets' recovery fine-tune at each size: every filter kept, the rate rewound
            path = folder / f"{method}-{size_mb:.2f}-recovery.pt"
            loaded = load_if_current(path, default_name)
            if loaded is not None:
                parent = loaded[0]
                bar.update(recovery)
            else:
                mentor = ancestor if teacher == "ancestor" else parent
                parent = train(copy.deepcopy(parent), mentor, data, recovery, derive_seed(seed, size_index, 99),
                               f"{method} {size_mb:.2f} MB recovery", bar)
                save_model(parent, path, {"parent": parent_name, **made_with})
            parent_name = default_name = path.name
            parent_top1 = top1(parent, data)
        epochs = sum(steps_for(scale, i) for i in range(size_index + 1)) * scale["epochs_per_step"] + \
            recovery * (size_index + 1) + extra_epochs
        rows.append({"method": method, "target_mb": size_mb, "model": parent, "top1": parent_top1,
                     "params": parent.genome.params, "size_mb": parent.genome.size_bytes / 1e6,
                     "macs_m": parent.genome.macs(scale["image_size"]) / 1e6, "epochs": epochs,
                     # the budget: training images processed after the ancestor, redraws and the proxy included
                     "budget_images": epochs * len(data.train) + spent, "proxy_images": spent,
                     "redrawn": list(redrawn), "collapsed": list(collapsed),
                     "strength": None if method == "torch-pruning" else STRENGTH})
    return rows


def score_steps(methods: list[str], scale: dict, folder: Path, data) -> int:
    """--score-steps: top-1 of every step (and recovery) file of ``methods`` in ``folder``, in order; prints a
    line each and writes FOLDER/steps.json. Trains nothing, so it can watch a run that is still going."""
    rows = []
    for method in methods:
        for size_index, size_mb in enumerate(SIZES_MB):
            names = [f"step{k}{suffix}" for k in range(steps_for(scale, size_index))
                     for suffix in [""] + [f"-redraw{a}" for a in range(1, REDRAWS_SCORED + 1)]] + ["recovery"]
            for name in names:
                path = folder / f"{method}-{size_mb:.2f}-{name}.pt"
                if path.is_file():
                    model, _ = load_model(path)
                    rows.append({"method": method, "target_mb": size_mb, "step": name, "params": model.genome.params,
                                 "top1": top1(model, data)})
                    print(f"{method} <= {size_mb:.2f} MB {name}: {model.genome.params:,} params, "
                          f"{100 * rows[-1]['top1']:.1f} %", flush=True)
    (folder / "steps.json").write_text(json.dumps(rows, indent=2))
    return 0


def plot(rows: list[dict], ancestor: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = {"torch-pruning": "tab:orange", "uniform": "tab:green", "evolution": "tab:blue", "selection": "tab:purple"}
    for key, axis, label in (("size_mb", axes[0], "size, MB (fp32 weights)"),
                             ("b1_vs_ancestor", axes[1], "ONNX Runtime CPU batch-1 speed vs ancestor (x)")):
        if any(key not in r for r in rows):
            axis.set_visible(False)
            continue
        for name in dict.fromkeys(label_of(r) for r in rows):  # in order, once each
            mine = [r for r in rows if label_of(r) == name]
            start = 1.0 if key == "b1_vs_ancestor" else ancestor[key]  # the ancestor is 1x by definition
            axis.plot([start] + [r[key] for r in mine], [100 * ancestor["top1"]] + [100 * r["top1"] for r in mine],
                      "o" + ("--" if mine[0].get("strength") == "filter" else "-"), color=colours[mine[0]["method"]],
                      label=name)
        axis.plot([1.0 if key == "b1_vs_ancestor" else ancestor[key]], [100 * ancestor["top1"]], "k*", markersize=12, label="ancestor")
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 on the held-out split, %")
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].invert_xaxis()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def label_of(row: dict) -> str:
    """The method, with the strength it ranked filters by where it has one ("evolution (consumer)")."""
    if row.get("label"):
        return row["label"]
    strength = row.get("strength")
    return f"{row['method']} ({strength})" if strength and row["method"] != "torch-pruning" else row["method"]


def speed(row: dict, key: str, form: str, unit: str = "") -> str:
    return format(row[key], form) + unit if key in row else "-"  # "-": not measured (--no-speed)


def markdown(rows: list[dict], ancestor: dict) -> str:
    lines = ["| model | target | top-1 % | params | MB | MACs (M) | epochs after the ancestor | budget (images, proxy incl.) "
             "| ORT b1 img/s | b1 vs ancestor | ORT b8 img/s | b8 vs ancestor | steps redrawn (collapsed) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in [ancestor] + rows:
        target = "-" if r["target_mb"] is None else f"<= {r['target_mb']} MB"
        redrawn = "-" if "redrawn" not in r else (", ".join(r["redrawn"]) or "none") + \
            (f" ({', '.join(r['collapsed'])})" if r.get("collapsed") else "")
        lines.append(f"| {label_of(r)} | {target} | "
                     f"{100 * r['top1']:.1f} | {r['params']:,} | {r['size_mb']:.3f} | {r['macs_m']:.1f} | {r['epochs']} | "
                     f"{r.get('budget_images', 0):,.0f} | "
                     f"{speed(r, 'b1_ips', '.0f')} | {speed(r, 'b1_vs_ancestor', '.2f', 'x')} | {speed(r, 'b8_ips', '.0f')} | "
                     f"{speed(r, 'b8_vs_ancestor', '.2f', 'x')} | {redrawn} |")
    return "\n".join(lines)


def merge(paths: list[Path], folder: Path, speed_rounds: int = 0, seconds: float = 2.0) -> int:
    """--merge: the rows of several peers.json side by side (FOLDER/peers-merged.{json,png,md}). They must share
    the ancestor (same file and top-1) and the scale, or the comparison is refused by name.

    ``speed_rounds`` > 0: every row's ONNX (RUN/<method>-<MB>/model.onnx, RUN the run's folder) measured again in
    this one process, each alternately with the ancestor, ``speed_rounds`` rounds of ``seconds`` per batch size:
    all methods side by side in one run, instead of one measurement pass per run folder."""
    results = [json.loads(p.read_text()) for p in paths]
    first = results[0]
    for path, result in zip(paths[1:], results[1:]):
        for key in ("ancestor_file", "teacher"):
            if result.get(key) != first.get(key):
                print(f"--merge: {path} has {key} {result.get(key)!r}, {paths[0]} {first.get(key)!r}; merge runs from "
                      "the same ancestor and teacher", file=sys.stderr)
                return 2
        if result["ancestor"]["top1"] != first["ancestor"]["top1"]:
            print(f"--merge: {path} scored a different ancestor than {paths[0]}", file=sys.stderr)
            return 2
        schedule, first_schedule = ({k: v for k, v in r["scale"].items() if k not in PER_RUN} for r in (result, first))
        if schedule != first_schedule:
            differ = sorted(k for k in set(schedule) | set(first_schedule) if schedule.get(k) != first_schedule.get(k))
            print(f"--merge: {path} ran another schedule than {paths[0]} ({', '.join(differ)} differ); merge runs of "
                  "one --scale", file=sys.stderr)
            return 2
    rows = []
    for index, result in enumerate(results):
        for r in result["rows"]:
            rows.append({"strength": None if r["method"] == "torch-pruning" else result["scale"].get("strength", "filter"),
                         **r, "source": result["command"], "run": index + 1})
    runs_of = {}
    for r in rows:
        runs_of.setdefault(label_of(r), set()).add(r["run"])
    for r in rows:  # one label per line of the plot and row of the table: a label two runs share says its run
        if len(runs_of[label_of(r)]) > 1:
            r["label"] = f"{label_of(r)} [run {r['run']}]"
    base = dict(first["ancestor"])
    if speed_rounds:
        from tqdm import tqdm
        runs = [Path(result.get("folder", path.parent)) for path, result in zip(paths, results)]
        ancestor_onnx = runs[0] / "ancestor" / MODEL_ONNX
        onnx = [runs[r["run"] - 1] / f"{r['method']}-{r['target_mb']:.2f}" / MODEL_ONNX for r in rows]
        missing = [str(p) for p in [ancestor_onnx] + onnx if not p.is_file()]
        if missing:
            print(f"--speed-rounds: no ONNX at {', '.join(missing)}; run the measurement pass (without --no-speed) "
                  "in each run folder first", file=sys.stderr)
            return 2
        base.update(against_ancestor(ancestor_onnx, ancestor_onnx, speed_rounds, seconds))
        for r, path in tqdm(list(zip(rows, onnx)), desc=f"ONNX Runtime, {speed_rounds} rounds alternating with the ancestor",
                            unit="model"):
            r.update(against_ancestor(ancestor_onnx, path, speed_rounds, seconds))
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, base)
    from bench.machine import describe_machine
    (folder / "peers-merged.json").write_text(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(), "speed_rounds": speed_rounds, "sources": [str(p) for p in paths],
        "ancestor": base, "rows": rows}, indent=2))
    (folder / "peers-merged.md").write_text(table + "\n")
    plot(rows, base, folder / "peers-merged.png",
         f"peers merged from {len(paths)} runs ({first['scale']['image_size']} px)")
    print(table)
    return 0


def default_teacher(scale: dict) -> str:
    """--teacher when it is not given: the ancestor at the scales with a recovery (the gentle ones, issue 15's
    fight: every method distils from the ancestor, as host-evolve's presets do), the previous step's model at the
    earlier scales (as sections 5 and 6 of docs/benchmarks.md ran them)."""
    return "ancestor" if scale.get("recovery_epochs") else "parent"


def run_file_name(methods: list, strength: str) -> str:
    """The copy of peers.json named by what ran, e.g. peers-evolution+uniform-consumer.json, for --merge."""
    return f"peers-{'+'.join(methods)}-{strength}.json"


def main(argv=None) -> int:
    from host.evolve.synthesis import STRENGTHS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--data", default=str(SHARED / "datasets" / "imagenette"))
    parser.add_argument("--pretrained", default=str(SHARED / "weights" / "squeezenet1_1_imagenet.pth"))
    parser.add_argument("--out", default=None, help="folder (default runs/peers/SCALE)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--no-speed", action="store_true", help="skip the ONNX Runtime measurement")
    parser.add_argument("--teacher", choices=("parent", "ancestor"), default=None,
                        help="distil from the previous step's model or from the ancestor (default: the ancestor at the "
                             "gentle scales, issue 15's fight, as the presets do; the previous step's at the others)")
    parser.add_argument("--ancestor", default=None, metavar="MODEL_FILE",
                        help=f"start every method from this trained host-evolve model file (e.g. RUN/gen-00/{offspring_weights(0)} "
                             "of a run at the same --image-size on the same data) instead of training one here")
    parser.add_argument("--strength", choices=STRENGTHS, default="filter",
                        help="what uniform, evolution and selection rank filters by (default filter, the paper's)")
    parser.add_argument("--max-drop", type=float, default=MAX_DROP,
                        help="a step this far below its parent (fraction) or near chance is drawn again at a milder R, "
                             f"its epochs counted in the budget (default {MAX_DROP:g}, host-evolve's; 1 = off)")
    parser.add_argument("--redraws", type=int, default=REDRAWS, help=f"redraws of a collapsed step (default {REDRAWS})")
    parser.add_argument("--recovery-epochs", type=int, default=None, metavar="N",
                        help="epochs of the recovery fine-tune at each size (default: the scale's, 4 at the gentle "
                             "ones, what 9h measured; the presets now use 20: docs/benchmarks.md 9k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-steps", action="store_true",
                        help="train nothing: score every step file already in --out (a run in progress, or stopped)")
    parser.add_argument("--merge", nargs="+", metavar="PEERS_JSON",
                        help="train nothing: one table and plot (into --out) from the peers.json of runs from the same "
                             "--ancestor, e.g. one per --strength")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="with --merge: measure every run's ONNX again in one process, this many rounds alternating "
                             "with the ancestor (2 s each)")
    args = parser.parse_args(argv)
    if args.merge:
        return merge([Path(p) for p in args.merge], Path(args.out or "."), args.speed_rounds)
    if args.redraws < 0:
        print(f"--redraws {args.redraws}: give 0 or more (0: a collapsed step goes on as it is)", file=sys.stderr)
        return 2
    global STRENGTH
    STRENGTH = args.strength
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    from tqdm import tqdm
    scale = dict(SCALES[args.scale])
    if args.recovery_epochs is not None:
        if args.recovery_epochs < 0:
            print(f"--recovery-epochs {args.recovery_epochs}: give 0 or more (0: no recovery fine-tune)", file=sys.stderr)
            return 2
        scale["recovery_epochs"] = args.recovery_epochs
    args.teacher = args.teacher or default_teacher(scale)
    folder = Path(args.out or PROJECT / "runs" / "peers" / args.scale)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = Data(args.data, scale["image_size"], folder / "cache", args.seed)
    if args.score_steps:
        return score_steps(methods, scale, folder, data)
    total = scale["ancestor_epochs"] + len(methods) * (sum(steps_for(scale, i) for i in range(len(SIZES_MB))) *
                                                       scale["epochs_per_step"] + scale.get("recovery_epochs", 0) * len(SIZES_MB))
    bar = tqdm(total=total, desc="peers (epochs)", unit="epoch", dynamic_ncols=True)
    ancestor, ancestor_top1, ancestor_seconds = ancestor_model(data, scale, args.pretrained, folder, args.seed, bar,
                                                               args.ancestor)
    rows = []
    for method in methods:
        rows += run_method(method, ancestor, data, scale, folder, args.seed, bar, args.teacher, ancestor_top1,
                           args.max_drop, args.redraws)
    bar.close()
    base = {"method": "ancestor", "target_mb": None, "top1": ancestor_top1, "params": ancestor.genome.params,
            "size_mb": ancestor.genome.size_bytes / 1e6, "macs_m": ancestor.genome.macs(scale["image_size"]) / 1e6,
            "epochs": 0, "train_seconds": ancestor_seconds}
    if not args.no_speed:
        ancestor_onnx = export(ancestor, folder / "ancestor", data, "ancestor")
        base.update(against_ancestor(ancestor_onnx, ancestor_onnx))
        for r in tqdm(rows, desc="ONNX Runtime, alternating with the ancestor", unit="model"):
            onnx_path = export(r["model"], folder / f"{r['method']}-{r['target_mb']:.2f}", data, r["method"])
            r.update(against_ancestor(ancestor_onnx, onnx_path))
    for r in rows:
        del r["model"]
    from bench.machine import describe_machine  # the cores this process may use, not nproc (which reads OMP_NUM_THREADS)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python bench/peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": describe_machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "scale": {**scale, **TRAIN, "strength": STRENGTH, "max_drop": args.max_drop, "redraws": args.redraws, "round_to": ROUND_TO, "min_filters": MIN_FILTERS},
              "teacher": args.teacher, "ancestor_file": args.ancestor, "folder": str(folder), "seconds": time.time() - started, "ancestor": base, "rows": rows}
    (folder / "peers.json").write_text(json.dumps(result, indent=2))
    # and under a name of its own, for --merge: several runs may share a folder (and its peers.json)
    (folder / run_file_name(methods, STRENGTH)).write_text(json.dumps(result, indent=2))
    plot(rows, base, folder / "peers.png", f"peers at scale {args.scale} ({scale['image_size']} px), {result['date'][:10]}")
    print(markdown(rows, base))
    print(f"took {result['seconds']:.0f} s; {folder / 'peers.json'}, {folder / 'peers.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
