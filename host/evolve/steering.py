"""The evolution's selection, steer and stop rules: pure functions of one generation's figures.

After generation g is recorded, ``next_step`` asks the rules in this order (the order is the behaviour):

1. Speed steering (``--target-fps``, unless ``--fixed-env``): from the generation's measured fps f and the
   target T, the next environment factor is

       R_next = clamp(sqrt(f / T), env_floor, env_factor)

   Far from the target the environment is harsh (f/T = 0.25 gives R = 0.5), near it R relaxes to the
   configured env_factor, and it is never harsher than env_floor. The square root asks each generation for
   about half of the remaining speed-up (in log terms), since compute and speed are not exactly
   proportional and one harsh step costs more accuracy than two mild ones.
2. Speed target (``--target-fps``): stop once f >= T.
3. Size steering (``--target-mb``, only while not stopped and generations are left): the R that, repeated
   for the n generations left, lands on the target size in expectation,

       R_size = (target_bytes / size_bytes) ** (1 / n)

   and the next R is min(R_next, R_size), never below env_floor; stop when the size is already there.
4. Top-1 floor (``--top1-floor``): stop when the generation's top-1 falls below the floor. Its reason wins
   over the others: it says why the run's last generations are worse than the best.

Selection within a generation (``fitness``): the best top-1 (plus the speed bonus with ``--fps-weight``),
then the smaller.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from host.errors import HostError
from host.run.acceptance import images_of, near_chance


class Step(NamedTuple):
    """What the evolution does after a generation: the next R, and why it stops (None: it goes on)."""
    env_factor: float
    stop_reason: str | None


def next_env_factor(fps: float, target_fps: float, env_floor: float, env_factor: float) -> float:
    """Rule 1, speed steering: R_next = clamp(sqrt(f / T), env_floor, env_factor)."""
    if fps <= 0 or target_fps <= 0:
        raise HostError(f"cannot steer with measured fps {fps} and target {target_fps}: both must be > 0")
    return max(env_floor, min(env_factor, math.sqrt(fps / target_fps)))


def speed_target_met(generation: int, fps: float, target_fps: float) -> str | None:
    """Rule 2: the stop reason once the generation's measured fps reaches the target, else None."""
    if fps >= target_fps:
        return f"target {target_fps:g} fps met by generation {generation} ({fps:.0f} fps)"
    return None


def size_env_factor(parent_bytes: float, target_bytes: float, generations_left: int) -> float | None:
    """Rule 3's R: ``(target / parent) ** (1 / generations_left)``, which repeated for the generations left
    lands on the target size in expectation; None when the parent is already there."""
    if parent_bytes <= target_bytes:
        return None
    return (target_bytes / parent_bytes) ** (1.0 / max(1, generations_left))


def steer_by_size(generation: int, size_bytes: float, target_mb: float, generations_left: int, env_factor: float,
                  env_floor: float) -> Step:
    """Rule 3, size steering: the next R no milder than the size budget asks, or a stop once the size is met."""
    size_factor = size_env_factor(size_bytes, target_mb * 1e6, generations_left)
    if size_factor is None:
        return Step(env_factor, f"size target {target_mb:g} MB met by generation {generation}")
    return Step(max(env_floor, min(env_factor, size_factor)), None)


def steer_by_predicted_speed(generation: int, predicted_ms: float, ancestor_ms: float, target_speedup: float,
                             generations_left: int, env_factor: float, env_floor: float) -> Step:
    """Rule 3b, speed by the latency table (--budget latency --target-speedup S): the next R no milder than
    ``(target / predicted) ** (1 / generations_left)`` asks, target = the ancestor's predicted batch-1 latency / S,
    so that the last generation lands on it in expectation (rule 3's arithmetic on latency); a stop reason once
    the prediction is there."""
    target_ms = ancestor_ms / target_speedup
    factor = size_env_factor(predicted_ms, target_ms, generations_left)
    if factor is None:
        return Step(env_factor, f"predicted speed-up {target_speedup:g}x met by generation {generation} "
                                f"({ancestor_ms / predicted_ms:.2f}x: {predicted_ms:.3f} ms against the ancestor's "
                                f"{ancestor_ms:.3f} ms)")
    return Step(max(env_floor, min(env_factor, factor)), None)


def top1_below_floor(generation: int, top1: float, top1_floor: float) -> str | None:
    """Rule 4: the stop reason when the generation's top-1 fell below the floor (a floor of 0 is off)."""
    if top1_floor > 0 and top1 < top1_floor:
        return (f"top-1 {100 * top1:.1f} % of generation {generation} fell below the floor "
                f"{100 * top1_floor:.1f} %")
    return None


def next_step(config, generation: int, row: dict, steering_fps: float | None, env_factor: float,
              predicted_ms: float | None = None, ancestor_ms: float | None = None) -> Step:
    """Rules 1-4 in order for the generation just recorded (``row``), given the R it was bred with.
    ``steering_fps`` is the generation's fps from ``--latency-from`` when ``config.target_fps`` is set (None
    otherwise). ``predicted_ms``/``ancestor_ms``: the latency table's prediction of this generation and of the
    ancestor (--target-speedup). With both a size and a predicted-speed target, R is the harsher of the two and
    the run stops once both are met."""
    c, stop_reason = config, None
    if c.target_fps > 0:
        if c.steer:
            env_factor = next_env_factor(steering_fps, c.target_fps, c.env_floor, c.env_factor)
        stop_reason = speed_target_met(generation, steering_fps, c.target_fps)
    targets = []
    if stop_reason is None and generation < c.generations:
        if c.target_mb > 0:
            targets.append(steer_by_size(generation, row["size_bytes"], c.target_mb, c.generations - generation,
                                         env_factor, c.env_floor))
        if getattr(c, "target_speedup", 0) > 0 and predicted_ms is not None and ancestor_ms:
            targets.append(steer_by_predicted_speed(generation, predicted_ms, ancestor_ms, c.target_speedup,
                                                    c.generations - generation, env_factor, c.env_floor))
    if targets:
        open_targets = [step for step in targets if step.stop_reason is None]
        if open_targets:
            env_factor = min(step.env_factor for step in open_targets)
        else:
            stop_reason = "; ".join(step.stop_reason for step in targets)
    return Step(env_factor, top1_below_floor(generation, row["top1"], c.top1_floor) or stop_reason)


def fitness(row: dict, fps_weight: float, target_fps: float) -> tuple:
    """Selection: the best top-1 (plus ``fps_weight`` x min(1, local fps / target) for offspring whose speed
    was measured), then the smaller."""
    bonus = fps_weight * min(1.0, row["local_fps"] / target_fps) if row.get("local_fps") else 0.0
    return (row["top1"] + bonus, -row["params"])


# -- acceptance: no collapsed generation (the near-chance and best rules: host/run/acceptance.py) ------


def collapse_reason(generation: int, top1: float, parent_top1: float | None, num_classes: int,
                    max_drop: float, ancestor_top1: float | None = None, max_total_drop: float = 1.0,
                    chance: float | None = None, images: int | None = None) -> str | None:
    """Why an offspring (or, with ``parent_top1`` None, the ancestor) must not be accepted as a generation:
    its top-1 is near chance (``chance``: the larger of 1/N and the validation split's majority share,
    host/run/acceptance.py chance_share; 1/N when None), more than ``max_drop`` (a fraction, 0.10 = 10 points)
    below its parent's, or more than ``max_total_drop`` below the ancestor's (the accuracy the user will give up
    at most over the whole run). With ``images`` (the validation split's size) the drops are counted in whole
    images, so 2.0 points below on 200 images is 4 images, not a float a hair above 0.02. None when it is
    acceptable. ``max_drop`` >= 1 accepts everything (exploratory runs, the tests of mechanics)."""
    if max_drop >= 1:
        return None
    if parent_top1 is not None and near_chance(parent_top1, num_classes, chance):
        return None  # nothing to fall from: a parent at chance is warned about, and never named best (report.py)
    what = "the ancestor" if parent_top1 is None else f"generation {generation}"
    if near_chance(top1, num_classes, chance):
        base = 1.0 / max(1, num_classes)
        told = (f"{100 * chance:.1f} %: what answering the majority class to everything scores"
                if chance is not None and chance > base + 1e-12 else f"{100 * base:.1f} % for {num_classes} classes")
        return f"{what} scored top-1 {100 * top1:.1f} %, near chance ({told})"

    def below(reference: float, limit: float) -> bool:
        if images:
            return round(reference * images) - round(top1 * images) > images_of(limit, images)
        return top1 < reference - limit - 1e-12
    if parent_top1 is not None and below(parent_top1, max_drop):
        return (f"{what} scored top-1 {100 * top1:.1f} %, {100 * (parent_top1 - top1):.1f} points below its "
                f"parent's {100 * parent_top1:.1f} % (the limit is {100 * max_drop:g} points, --max-drop)")
    if (parent_top1 is not None and ancestor_top1 is not None and not near_chance(ancestor_top1, num_classes, chance)
            and below(ancestor_top1, max_total_drop)):
        return (f"{what} scored top-1 {100 * top1:.1f} %, {100 * (ancestor_top1 - top1):.1f} points below the "
                f"ancestor's {100 * ancestor_top1:.1f} % (the limit is {100 * max_total_drop:g} points, "
                "--max-total-drop)")
    return None


def milder_env_factor(env_factor: float, attempt: int) -> float:
    """The R of the ``attempt``-th redraw of a collapsed generation: halfway closer to 1 each time,
    R_k = 1 - (1 - R) / 2^k (0.93 -> 0.965 -> 0.9825): a milder environment, so the redraw keeps more."""
    return 1.0 - (1.0 - env_factor) / 2 ** attempt
