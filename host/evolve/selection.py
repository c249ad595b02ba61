"""Selection: many candidate offspring drawn from the heredity model, scored cheaply, the fittest trained fully.

With one offspring per generation nothing selects among the heredity model's random variations, so the
"evolution" is pruning with strength-weighted odds (issue 15). Here each generation draws ``candidates``
offspring from the same heredity model (the same lambda, other seeds) and ranks them by a cheap proxy of the
top-1 they would reach once trained; only the fittest is trained for the generation's epochs.

SqueezeNet v1.1 has no batch norm, so EagleEye's adaptive-BN evaluation (Li et al., ECCV 2020) does not carry
over. The proxies measured here (bench/proxy_correlation.py, docs/benchmarks.md section 9):

- ``fidelity``: KL(parent || candidate) of the softmax outputs on a fixed proxy subset of P training images,
  right after inheritance (0 training steps; forward passes only: P images through two nets). Lower is fitter.
- ``tuned_loss``: cross-entropy on the proxy subset after S steps of distillation from the parent on other
  training images (S x batch images trained). Lower is fitter.

Every proxy step counts in the budget: ``proxy_images`` is what the generation spent on scoring, in
training-image equivalents (a forward pass counted as 1/3 of a training step, the usual forward : backward
cost of 1 : 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from contract.preprocess import PreprocessSpec
from host.evolve.data import CachedImages, augment_batch, normalize_batch

FORWARD_SHARE = 1.0 / 3.0  # a forward pass costs about a third of a training step (forward + backward)


@dataclass(frozen=True)
class ProxySet:
    """The fixed images every candidate of a run is scored on: ``score`` (indices into the training split)
    and ``tune`` (the rest, for the short distillation of ``tuned_loss``). Seeded: the same run draws the
    same subsets, so scores of different generations are comparable."""
    score: np.ndarray
    tune: np.ndarray

    @classmethod
    def draw(cls, train: CachedImages, count: int, seed: int) -> "ProxySet":
        """``count`` images per proxy subset, stratified by class (at most half of each class)."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(train.labels)
        classes = np.unique(labels)
        per_class = max(1, count // max(1, len(classes)))
        score = []
        for label in classes:
            members = np.flatnonzero(labels == label)
            take = min(per_class, max(1, len(members) // 2))
            score.extend(rng.choice(members, size=take, replace=False).tolist())
        score = np.sort(np.asarray(score, dtype=np.int64))
        tune = np.setdiff1d(np.arange(len(labels)), score)
        return cls(score, tune)


@torch.no_grad()
def logits_on(model: torch.nn.Module, data: CachedImages, indices: np.ndarray, spec: PreprocessSpec,
              device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits (len(indices) x N classes, float32 on the CPU) of ``model`` in eval mode, no augmentation."""
    model.eval()
    outputs = []
    for start in range(0, len(indices), batch_size):
        index = indices[start:start + batch_size]
        images = torch.from_numpy(np.asarray(data.images[index])).to(device)
        outputs.append(model(normalize_batch(images, spec)).float().cpu())
    return torch.cat(outputs)


def fidelity(candidate_logits: torch.Tensor, parent_logits: torch.Tensor) -> float:
    """Mean KL(parent || candidate) of the softmax outputs, nats per image (0: the same function)."""
    return float(F.kl_div(F.log_softmax(candidate_logits, 1), F.log_softmax(parent_logits, 1),
                          reduction="batchmean", log_target=True))


def heldout_scores(logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """(cross-entropy in nats, top-1 in [0, 1]) of ``logits`` against ``labels``."""
    target = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return float(F.cross_entropy(logits, target)), float((logits.argmax(1) == target).float().mean())


def short_distillation(model: torch.nn.Module, teacher: torch.nn.Module, data: CachedImages, indices: np.ndarray,
                       spec: PreprocessSpec, steps: int, batch_size: int, lr: float, seed: int,
                       device: torch.device, crop_scale: float = 0.5, temperature: float = 2.0) -> int:
    """``steps`` SGD steps (momentum 0.9, constant ``lr`` after a linear warm-up over the first quarter) of
    distillation from ``teacher`` at temperature T (Hinton et al. 2015: KL x T^2) on seeded batches of
    ``indices``. Trains ``model`` in place; returns the images it trained on."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    warmup = max(1, steps // 4)
    teacher.eval()
    model.train()
    rng = np.random.default_rng(seed)
    seen = 0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        index = np.sort(rng.choice(indices, size=min(batch_size, len(indices)), replace=False))
        images = torch.from_numpy(np.asarray(data.images[index])).to(device)
        inputs = augment_batch(normalize_batch(images, spec), generator, scale=(crop_scale, 1.0))
        with torch.no_grad():
            soft = F.log_softmax(teacher(inputs) / temperature, 1)
        loss = F.kl_div(F.log_softmax(model(inputs) / temperature, 1), soft, reduction="batchmean",
                        log_target=True) * temperature ** 2
        if not torch.isfinite(loss):
            break  # a candidate that diverges in its proxy scores as it stands (and badly)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(index)
    model.eval()
    return seen


def spearman(a, b) -> float:
    """Spearman's rank correlation of two sequences (average ranks for ties); nan for fewer than 3 pairs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3:
        return math.nan

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # average ranks of ties
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else math.nan


def strongest_offspring(strengths: dict, lam: float, *, min_filters: int = 1, round_to: int = 1,
                        scales: dict | None = None) -> dict:
    """The heredity model's most likely offspring, drawn without chance: every layer keeps as many filters as
    it keeps in expectation (rounded to the nearest, then ``final_count``'s floor and rounding), its strongest.
    {layer: sorted indices}, the format of ``host.evolve.synthesis.sample_offspring``."""
    from host.evolve.synthesis import final_count, keep_probabilities
    kept = {}
    for name, layer_strengths in strengths.items():
        layer_strengths = np.asarray(layer_strengths, dtype=np.float64)
        expected = float(keep_probabilities(layer_strengths, lam * (scales[name] if scales else 1.0)).sum())
        count = final_count(int(round(expected)), len(layer_strengths), min_filters, round_to)
        order = np.argsort(-layer_strengths, kind="stable")
        kept[name] = np.sort(order[:count])
    return kept
