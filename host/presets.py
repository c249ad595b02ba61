"""``host-evolve --preset NAME``: the measured recipes, as values under a TOML file and the flags.

Both start from SqueezeNet v1.1 (give ``--pretrained``) at 112 px, distil every offspring from the ancestor
(weight 0.5), budget R on MACs (meant to put the cuts where the time is, the early high-resolution layers;
measured, it cuts every layer in about the same share: docs/benchmarks.md section 7), round widths to
multiples of 16, and end with a recovery fine-tune of the last generation: 20 epochs for compact, 4 for tiny.
Measured on Imagenette, 2-core CPU: compact 0.914 MB, -0.8 points against its ancestor after the 20-epoch
recovery (docs/benchmarks.md 9k; with 4 epochs, section 7: 0.918 MB, -1.5 points, 2.03x faster at batch 1);
tiny 0.477 MB, -3.5 points, 2.49x (section 7; tiny's path went 5.1 points below its ancestor on the way, so tiny
sets --max-total-drop 0.08 and --top1-tolerance 0.04: see PRESETS; 12 recovery epochs gave it +0.4 with consumer
strengths, 9i, not measured with the preset's own, so tiny keeps 4).
"""
from __future__ import annotations

COMMON = {"image_size": 112, "ancestor_epochs": 6, "lr": 0.01, "crop_scale": 0.5, "round_to": 16, "budget": "macs",
          "env_factor": 0.93, "distill_from": "ancestor", "distill_weight": 0.5, "final_epochs": 4,
          "min_filters": 4, "batch_size": 64}

PRESETS = {
    # <= 0.95 MB within 1 point of the ancestor, >= 2x its batch-1 speed (issue 10's box): the size rule stops
    # the run at the target, about generation 11; then 20 recovery epochs: the last generation 87.8 -> 89.3 %,
    # -0.8 points against the ancestor where section 7's 4 epochs ended at -1.5 (docs/benchmarks.md 9k; with
    # consumer strengths 9i measured 12 epochs at +1.0 over 4, 20 at +1.3)
    "compact": dict(COMMON, preset="compact", epochs=4, generations=15, target_mb=0.95, final_epochs=20),
    # <= 0.49 MB within 2 points, >= 3x: compact's recipe carried on, 3 epochs a generation. Its path runs
    # lower than the default acceptance allows (section 7: generation 11 at 5.1 points below the ancestor, the
    # recovery then won 0.8 back), so it accepts up to 8 points below the ancestor (a collapse is still near chance
    # or 10 below its parent), and best_generation is the smallest within 4 points: a user who asks for tiny
    # asks for the size (its measured drop, 3.5 points, inside the bar)
    "tiny": dict(COMMON, preset="tiny", epochs=3, generations=22, target_mb=0.49, max_total_drop=0.08,
                 top1_tolerance=0.04),
}
PRESET_NAMES = tuple(PRESETS)


def preset_values(name: str) -> dict:
    """The config values of preset ``name`` (a copy); KeyError for an unknown name (argparse's choices stop
    that first)."""
    return dict(PRESETS[name])
