"""The one acceptance rule both programs read: which generation of a run is near chance, and which one is "best".

host-evolve names the best generation in summary.json (host/run/report.py) and refuses collapsed offspring with
it (host/evolve/steering.py: collapse_reason); host-serve answers ``/models/best/`` with the same function, so
the two can never disagree.
"""
from __future__ import annotations

import json

CHANCE_MARGIN = 0.25  # "near chance": less than a quarter of the way from chance (1/N) to a perfect score


def near_chance(top1: float, num_classes: int) -> bool:
    """True when top-1 is below chance + CHANCE_MARGIN x (1 - chance), chance = 1/N: 50 % for 3 classes,
    43.8 % for 4, 32.5 % for 10. A constant output scores exactly chance; a net that learned scores far above."""
    chance = 1.0 / max(1, num_classes)
    return top1 < chance + CHANCE_MARGIN * (1.0 - chance)


def best_generation(generations: list[dict], tolerance: float, floor: float = 0.0) -> tuple[int | None, str]:
    """(the generation to deploy, why): the smallest generation whose top-1 is within ``tolerance`` (a
    fraction: 0.02 = 2 points) of the ancestor's and at or above ``floor``; ties go to the more accurate.
    The ancestor itself always qualifies unless below the floor."""
    if not generations:
        return None, "no generation was accepted"
    ancestor = generations[0]["top1"]
    bar = max(floor, ancestor - tolerance)
    eligible = [g for g in generations if g["top1"] >= bar - 1e-12]
    if not eligible:
        return None, f"no generation reached top-1 {100 * bar:.1f} % (--top1-floor)"
    best = min(eligible, key=lambda g: (g["size_bytes"], -g["top1"]))
    rule = (f"within {100 * tolerance:g} points of the ancestor's {100 * ancestor:.1f} % (--top1-tolerance)"
            if bar > floor else f"at or above the top-1 floor {100 * floor:.1f} %")
    return best["generation"], (f"generation {best['generation']}: the smallest ({best['size_bytes'] / 1e6:.3f} MB) "
                                f"with top-1 {100 * best['top1']:.1f} %, {rule}")


def run_best_generation(generations: list[dict], config: dict) -> tuple[int | None, str]:
    """(the run's best generation, why) under its config (``best_generation`` above): the smallest whose
    top-1 is within ``top1_tolerance`` of the ancestor's and at least ``top1_floor``, the more accurate on a tie;
    None when none qualifies, or when the ancestor itself is near chance while acceptance is on (nothing of such
    a run is worth deploying). summary.json's ``best_generation`` and host-serve's ``/models/best/`` are this."""
    if generations and config.get("max_drop", 1.0) < 1:
        genome = generations[0]["genome"]
        classes = (json.loads(genome) if isinstance(genome, str) else genome)["num_classes"]
        if near_chance(generations[0]["top1"], classes):
            return None, (f"the ancestor scored {100 * generations[0]['top1']:.1f} %, near chance for {classes} "
                          "classes: no generation of this run is worth deploying")
    return best_generation(generations, config.get("top1_tolerance", 0.02), config.get("top1_floor") or 0.0)
