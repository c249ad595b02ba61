"""Deep evolutionary synthesis: the heredity model, pure functions on arrays (no torch).

1. Every output filter of every prunable conv is a *synaptic cluster*; its strength s_c = sum |w| over its
   own weights (the paper's; ``--strength consumer``: over the weights that read its output downstream,
   host/surgery.consumer_strengths).
2. The probability that a cluster survives into the offspring is
       P(keep c) = min(1, lambda * exp(s_c / z_l - 1)),   z_l = max strength in layer l,
   so the strongest filter of a layer survives with min(1, lambda) and weak ones are likely to die.
3. The environment factor R < 1 is the resource budget: lambda is solved by bisection so that the
   *expected* cost (parameters, or MACs) of the offspring is R x the parent's.
4. Offspring are sampled with a seeded generator; every layer keeps at least ``min_filters``, and
   ``round_to`` rounds the kept count up (with the next strongest filters) to a multiple that suits
   the hardware. Both are part of the expectation in step 3, computed exactly from the
   Poisson-binomial distribution of each layer's kept count.
5. Cost-aware heredity (an extension, off by default: alpha = 0 is the paper's model). One lambda for the
   whole net cuts every layer in about the same share whatever the budget counts; to spend the budget
   where the cost is, layer l's survival uses
       lambda_l = lambda * (c_l / c_bar) ** (-alpha),
   where c_l is the layer's marginal compute (the MACs the offspring saves by dropping one of its filters:
   its own weights and its consumers' inputs, times the output pixels) at the parent's widths, and c_bar
   the geometric mean over layers. Filters that cost more compute die more easily, whatever the budget
   counts; lambda is still solved so that the expected budgeted cost (parameters or MACs) is R x the
   parent's (step 3, with lambda_l in place of lambda). With a parameter budget this trades size for
   speed: the same size, fewer MACs.
"""
from __future__ import annotations

import math

import numpy as np

from host.errors import HostError
from host.evolve.genome import expected_cost

STRENGTHS = ("filter", "consumer")  # what s_c sums (step 1): a filter's own weights, or the weights that read it
LAMBDA_MAX = math.e  # at lambda = e every filter (s_c >= 0) has P = 1


def keep_probabilities(strengths: np.ndarray, lam: float) -> np.ndarray:
    """P(keep c) = min(1, lam * exp(s_c / z - 1)) for one layer's cluster strengths."""
    strengths = np.asarray(strengths, dtype=np.float64)
    z = strengths.max()
    if z <= 0:  # a dead layer: every filter is equally (un)likely
        return np.full(strengths.shape, min(1.0, lam / math.e))
    return np.minimum(1.0, lam * np.exp(strengths / z - 1.0))


def kept_count_pmf(probabilities: np.ndarray) -> np.ndarray:
    """Distribution of the number of survivors (Poisson-binomial), pmf[k] = P(k filters kept)."""
    pmf = np.ones(1)
    certain = int(np.sum(probabilities >= 1.0))
    for p in probabilities[probabilities < 1.0]:
        pmf = np.concatenate([pmf * (1.0 - p), [0.0]]) + np.concatenate([[0.0], pmf * p])
    return np.concatenate([np.zeros(certain), pmf])


def final_count(kept: int, width: int, min_filters: int, round_to: int) -> int:
    """The kept count after the floor (``min_filters``) and the rounding up to ``round_to``."""
    count = max(kept, min(min_filters, width))
    if round_to > 1:
        count = int(math.ceil(count / round_to) * round_to)
    return min(count, width)


def expected_width(probabilities: np.ndarray, min_filters: int, round_to: int) -> float:
    width = len(probabilities)
    if round_to <= 1 and min_filters <= 0:
        return float(probabilities.sum())
    pmf = kept_count_pmf(probabilities)
    counts = np.array([final_count(k, width, min_filters, round_to) for k in range(width + 1)], dtype=np.float64)
    return float(pmf @ counts)


def marginal_costs(num_classes: int, widths: dict, image_size: int, kind: str) -> dict:
    """c_l of step 5: the cost saved by dropping one filter of each layer, at ``widths``."""
    total = expected_cost(num_classes, widths, image_size, kind)
    return {name: total - expected_cost(num_classes, dict(widths, **{name: widths[name] - 1.0}), image_size, kind)
            for name in widths}


def layer_scales(strengths: dict, num_classes: int, image_size: int, cost_exponent: float,
                 kind: str = "macs") -> dict:
    """(c_l / c_bar) ** (-alpha) per layer (step 5, c_l in ``kind`` units: MACs, where time goes); all 1.0
    when alpha = 0 (the paper's model)."""
    if cost_exponent == 0:
        return {name: 1.0 for name in strengths}
    costs = marginal_costs(num_classes, {name: float(len(s)) for name, s in strengths.items()}, image_size, kind)
    log_mean = float(np.mean([math.log(c) for c in costs.values()]))
    return {name: math.exp(-cost_exponent * (math.log(costs[name]) - log_mean)) for name in strengths}


def expected_offspring_cost(strengths: dict, lam: float, num_classes: int, image_size: int, kind: str,
                            min_filters: int, round_to: int, scales: dict | None = None, cost_of=None) -> float:
    """The budgeted cost at the expected widths: ``kind``'s params or MACs (exact: the expectation passes
    through), or ``cost_of(widths)`` where given (--budget latency: the table's prediction at the expected
    widths, interpolated; an approximation, as latency is not a sum of adjacent products)."""
    widths = {name: expected_width(keep_probabilities(s, lam * (scales[name] if scales else 1.0)), min_filters,
                                   round_to) for name, s in strengths.items()}
    if cost_of is not None:
        return float(cost_of(widths))
    return expected_cost(num_classes, widths, image_size, kind)


def solve_lambda(strengths: dict, num_classes: int, env_factor: float, *, kind: str = "params",
                 image_size: int = 224, min_filters: int = 1, round_to: int = 1, tolerance: float = 1e-4,
                 scales: dict | None = None, cost_of=None) -> float:
    """The lambda whose expected offspring cost is ``env_factor`` x the parent's (bisection; cost grows with
    lambda). ``scales``: step 5's per-layer factors (layer_scales, or host/evolve/latency_cost.py's
    allocation), None for the paper's model. ``cost_of``: widths -> cost in place of ``kind`` (--budget latency)."""
    if not 0.0 < env_factor <= 1.0:
        raise HostError(f"environment factor R={env_factor} must be in (0, 1]: it is the offspring's share "
                        "of the parent's resources (the paper uses values just below 1, e.g. 0.93)")
    parent_widths = {name: float(len(s)) for name, s in strengths.items()}
    parent_cost = cost_of(parent_widths) if cost_of is not None else expected_cost(num_classes, parent_widths,
                                                                                     image_size, kind)
    target = env_factor * parent_cost

    def cost(lam: float) -> float:
        return expected_offspring_cost(strengths, lam, num_classes, image_size, kind, min_filters, round_to, scales,
                                       cost_of)

    low, high = 0.0, LAMBDA_MAX / (min(scales.values()) if scales else 1.0)  # every filter kept at ``high``
    if cost(low) >= target:  # even the floor of min_filters everywhere costs more than the budget
        return low
    for _ in range(60):
        mid = 0.5 * (low + high)
        if cost(mid) < target:
            low = mid
        else:
            high = mid
        if high - low < tolerance * LAMBDA_MAX:  # absolute: lambda's scale is that of the paper's model
            break
    return 0.5 * (low + high)


def sample_offspring(strengths: dict, lam: float, rng: np.random.Generator, *, min_filters: int = 1,
                     round_to: int = 1, scales: dict | None = None) -> dict:
    """Sample which clusters survive: {layer: sorted indices of the kept filters}.

    Layers are drawn in the dict's order from ``rng``, so the same seed gives the same offspring.
    ``scales``: step 5's per-layer factors of lambda (None: the paper's model).
    """
    kept = {}
    for name, layer_strengths in strengths.items():
        layer_strengths = np.asarray(layer_strengths, dtype=np.float64)
        width = len(layer_strengths)
        survive = rng.random(width) < keep_probabilities(layer_strengths, lam * (scales[name] if scales else 1.0))
        target = final_count(int(survive.sum()), width, min_filters, round_to)
        if target > survive.sum():  # top up with the strongest of the filters that died
            order = np.argsort(-layer_strengths, kind="stable")
            extra = [i for i in order if not survive[i]][: target - int(survive.sum())]
            survive[extra] = True
        kept[name] = np.flatnonzero(survive)
    return kept
