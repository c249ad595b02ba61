"""The one acceptance rule both programs read: which generation of a run is near chance, and which one is "best".

host-evolve names the best generation in summary.json (host/run/report.py) and refuses collapsed offspring with
it (host/evolve/steering.py: collapse_reason); host-serve answers ``/models/best/`` with the same function, so
the two can never disagree.

Judged in validation images, not in rounded fractions: a generation exactly 2 points below its ancestor on 200
images (4 images) is within a 2-point tolerance. A row's ``val_counts`` (host/evolve/train.py ``evaluate``:
per-class ``support``, ``correct``, ``predicted``) gives the counts; rows without them (runs made before they were
kept) are judged on their fractions as before. Chance is the larger of 1/N and the majority class's share: on 45
``ok`` and 3 ``defect`` photos, answering ``ok`` to everything scores 94 % and has learned nothing. A generation
that never answers a class of the validation split is never named best.
"""
from __future__ import annotations

import json
import math

CHANCE_MARGIN = 0.25  # "near chance": less than a quarter of the way from chance to a perfect score
Z_95 = 1.959964  # the normal quantile of a two-sided 95 % interval


def chance_share(num_classes: int, val_counts: dict | None = None) -> float:
    """What answering one class to everything scores: the larger of 1/N and the biggest class's share of the
    validation split (``val_counts["support"]``)."""
    chance = 1.0 / max(1, num_classes)
    support = (val_counts or {}).get("support") or []
    if sum(support) > 0:
        chance = max(chance, max(support) / sum(support))
    return chance


def near_chance(top1: float, num_classes: int, chance: float | None = None) -> bool:
    """True when top-1 is below chance + CHANCE_MARGIN x (1 - chance); chance is 1/N unless given (the majority
    share, :func:`chance_share`): 50 % for 3 balanced classes, 43.8 % for 4, 32.5 % for 10; 95.3 % for a split of
    45 + 3. A constant output scores exactly chance; a net that learned scores far above."""
    chance = 1.0 / max(1, num_classes) if chance is None else chance
    return top1 < chance + CHANCE_MARGIN * (1.0 - chance) - 1e-12


def images_of(fraction: float, images: int) -> int:
    """A tolerance of ``fraction`` (0.02 = 2 points) on ``images`` validation images, in whole images (4 on 200;
    0 on 16, where one image is 6.25 points)."""
    return int(math.floor(fraction * images + 1e-9))


def counts_of(row: dict) -> tuple[int, int] | None:
    """(images classified right, validation images) of a row with ``val_counts``, else None."""
    counts = _parsed(row.get("val_counts"))
    if not counts or not counts.get("support"):
        return None
    return int(sum(counts["correct"])), int(sum(counts["support"]))


def never_predicted(row: dict) -> list[int]:
    """The classes of the validation split (support > 0) that ``row``'s model never answered."""
    counts = _parsed(row.get("val_counts"))
    if not counts or not counts.get("predicted"):
        return []
    return [c for c, (support, predicted) in enumerate(zip(counts["support"], counts["predicted"]))
            if support > 0 and predicted == 0]


def interval(correct: int, images: int) -> tuple[float, float]:
    """Wilson's 95 % interval of a top-1 of ``correct`` of ``images`` (Wilson 1927; it stays inside [0, 1] and is
    honest for small splits and extreme shares, unlike the normal approximation)."""
    if images <= 0:
        return 0.0, 1.0
    p, z2 = correct / images, Z_95 ** 2
    centre = (p + z2 / (2 * images)) / (1 + z2 / images)
    half = Z_95 * math.sqrt(p * (1 - p) / images + z2 / (4 * images ** 2)) / (1 + z2 / images)
    return max(0.0, centre - half), min(1.0, centre + half)


def top1_text(row: dict) -> str:
    """"87.5 % (14/16, 95 % CI 64-97)" for a row with counts, else "87.5 %"."""
    counts = counts_of(row)
    if counts is None:
        return f"{100 * row['top1']:.1f} %"
    low, high = interval(*counts)
    return f"{100 * row['top1']:.1f} % ({counts[0]}/{counts[1]}, 95 % CI {100 * low:.0f}-{100 * high:.0f})"


def small_split_warning(images: int, tolerance: float, max_drop: float | None = None) -> str | None:
    """A warning when a validation split of ``images`` is too small for the tolerances asked: one image moves
    top-1 by 100/images points, and a tolerance below one image accepts nothing that loses even one."""
    if images <= 0:
        return None
    step = 100.0 / images
    asked = [(name, value) for name, value in (("--top1-tolerance", tolerance), ("--max-drop", max_drop))
             if value is not None and 0 < value < 1 and images_of(value, images) < 2]
    if not asked and images >= 100:
        return None
    low, high = interval(images // 2, images)
    parts = ", ".join(f"{name} {100 * value:g} points = {value * images:.1f} image(s)" for name, value in asked)
    return (f"the validation split has {images} images: one image is {step:.2f} points of top-1 and a top-1 near "
            f"50 % is known only to within {100 * (high - low) / 2:.0f} points (95 %)"
            + (f"; {parts}" if parts else "") + ". Add validation images (DIR/val/<class>) for figures that can "
            "tell generations apart")


def within_bar(generations: list[dict], tolerance: float, floor: float = 0.0) -> tuple[list[dict], float, str]:
    """(the generations at or above the bar, the bar as a top-1, how it is set): the bar is the ancestor's top-1
    less ``tolerance`` (in whole validation images when every row carries its counts), never below ``floor``."""
    ancestor = generations[0]
    counts = [counts_of(g) for g in generations]
    anchor = counts[0]
    if anchor is not None and all(c is not None and c[1] == anchor[1] for c in counts):
        correct, images = anchor
        bar_images = max(int(math.ceil(floor * images - 1e-9)), correct - images_of(tolerance, images))
        bar = bar_images / images
        text = (f"{bar_images} of {images} validation images: the ancestor's {correct} less "
                f"{images_of(tolerance, images)} ({100 * tolerance:g} points, --top1-tolerance)"
                if bar > floor + 1e-12 else f"the top-1 floor {100 * floor:.1f} % ({bar_images} of {images})")
        return [g for g, c in zip(generations, counts) if c[0] >= bar_images], bar, text
    bar = max(floor, ancestor["top1"] - tolerance)
    text = (f"within {100 * tolerance:g} points of the ancestor's {100 * ancestor['top1']:.1f} % (--top1-tolerance)"
            if bar > floor else f"at or above the top-1 floor {100 * floor:.1f} %")
    return [g for g in generations if g["top1"] >= bar - 1e-12], bar, text


def fastest_within_bar(generations: list[dict], tolerance: float, floor: float = 0.0) -> dict | None:
    """Where devices measured speed: the generation within the bar (answering every validation class) with the
    highest stable batch-1 benchmark on each device, ``{device_id: {"generation", "fps"}}``; None without one.
    The deploy answer for a user who judges by speed (``device_figures`` of summary.json's generations)."""
    if not generations:
        return None
    within, _, _ = within_bar(generations, tolerance, floor)
    fastest: dict = {}
    for g in within:
        if never_predicted(g):
            continue
        for figure in g.get("device_figures") or []:
            if figure.get("measurement") != "benchmark-b1" or figure.get("stable") is False or not figure.get("fps"):
                continue
            device = figure["device_id"]
            if device not in fastest or figure["fps"] > fastest[device]["fps"]:
                fastest[device] = {"generation": g["generation"], "fps": figure["fps"]}
    return fastest or None


def best_generation(generations: list[dict], tolerance: float, floor: float = 0.0,
                    labels: list[str] | None = None) -> tuple[int | None, str]:
    """(the generation to deploy, why): the smallest generation whose top-1 is within ``tolerance`` (a fraction:
    0.02 = 2 points, counted in whole validation images when the rows carry their counts) of the ancestor's -- the
    bar is anchored to the ancestor, generation 0 -- and at or above ``floor``; ties go to the more accurate. A
    generation that never answers a class of the validation split is passed over, and the reason says so. The
    ancestor itself qualifies unless below the floor or never answering a class."""
    if not generations:
        return None, "no generation was accepted"
    name = (lambda c: repr(labels[c]) if labels and c < len(labels) else f"class {c}")
    blind = {g["generation"]: never_predicted(g) for g in generations}
    within, bar, bar_text = within_bar(generations, tolerance, floor)
    eligible = [g for g in within if not blind[g["generation"]]]
    passed_over = [g for g in within if blind[g["generation"]]]
    over = "".join(f"; generation {g['generation']} passed over: it never answers "
                   f"{', '.join(name(c) for c in blind[g['generation']][:3])} (a class of the validation split)"
                   for g in passed_over[:3])
    if not eligible:
        return None, (f"no generation reached top-1 {100 * bar:.1f} % ({bar_text})" if not within else
                      "no generation within the bar answers every class of the validation split" + over)
    best = min(eligible, key=lambda g: (g["size_bytes"], -g["top1"]))
    better = [g for g in eligible if g["top1"] > best["top1"] and g is not best]
    note = ""
    if better:
        top = max(better, key=lambda g: g["top1"])
        note = (f"; the bar is anchored to the ancestor, so the more accurate generation {top['generation']} "
                f"({100 * top['top1']:.1f} %, {top['size_bytes'] / 1e6:.3f} MB) is passed over for size")
    return best["generation"], (f"generation {best['generation']}: the smallest ({best['size_bytes'] / 1e6:.3f} MB) "
                                f"with top-1 {top1_text(best)}, {bar_text}" + over + note)


def run_best_generation(generations: list[dict], config: dict,
                        labels: list[str] | None = None) -> tuple[int | None, str]:
    """(the run's best generation, why) under its config (``best_generation`` above): the smallest whose
    top-1 is within ``top1_tolerance`` of the ancestor's and at least ``top1_floor``, the more accurate on a tie;
    None when none qualifies, or when the ancestor itself is near chance (1/N or the majority class's share,
    whichever is larger) while acceptance is on (nothing of such a run is worth deploying). summary.json's
    ``best_generation`` and host-serve's ``/models/best/`` are this."""
    if generations and config.get("max_drop", 1.0) < 1:
        genome = generations[0]["genome"]
        classes = (json.loads(genome) if isinstance(genome, str) else genome)["num_classes"]
        chance = chance_share(classes, _parsed(generations[0].get("val_counts")))
        if near_chance(generations[0]["top1"], classes, chance):
            what = (f"the majority class's share {100 * chance:.1f} %" if chance > 1.0 / classes + 1e-12
                    else f"{100 / classes:.1f} % for {classes} classes")
            return None, (f"the ancestor scored {top1_text(generations[0])}, near chance ({what}): no generation "
                          "of this run is worth deploying")
    return best_generation(generations, config.get("top1_tolerance", 0.02), config.get("top1_floor") or 0.0, labels)


def _parsed(counts):
    return json.loads(counts) if isinstance(counts, str) else counts
