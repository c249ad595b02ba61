"""``host-evolve --preset NAME``: the measured recipes, as values under a TOML file and the flags.

Both start from SqueezeNet v1.1 (give ``--pretrained``) at 112 px, distil every offspring from the ancestor
(weight 0.5), budget R on MACs (time sits in the early, high-resolution layers: DESIGN.md), round widths to
multiples of 16, and end with a 4-epoch recovery fine-tune. Measured on Imagenette, 2-core CPU, docs/benchmarks.md
section 7: compact 0.918 MB, -1.5 points against its ancestor, 2.03x faster at batch 1; tiny 0.477 MB, -3.5
points, 2.49x.
"""
from __future__ import annotations

COMMON = {"image_size": 112, "ancestor_epochs": 6, "lr": 0.01, "crop_scale": 0.5, "round_to": 16, "budget": "macs",
          "env_factor": 0.93, "distill_from": "ancestor", "distill_weight": 0.5, "final_epochs": 4,
          "min_filters": 4, "batch_size": 64}

PRESETS = {
    # <= 0.95 MB within 1 point of the ancestor, >= 2x its batch-1 speed (issue 10's box): the size rule stops
    # the run at the target, about generation 10
    "compact": dict(COMMON, preset="compact", epochs=4, generations=15, target_mb=0.95),
    # <= 0.49 MB within 2 points, >= 3x: compact's recipe carried on, 3 epochs a generation
    "tiny": dict(COMMON, preset="tiny", epochs=3, generations=22, target_mb=0.49),
}
PRESET_NAMES = tuple(PRESETS)


def preset_values(name: str) -> dict:
    """The config values of preset ``name`` (a copy); KeyError for an unknown name (argparse's choices stop
    that first)."""
    return dict(PRESETS[name])
