"""Ablation: how one offspring recovers in one epoch under different training settings.

    python bench/ablate_offspring_training.py --run runs/bench-imagenette --generation 3 \
        first:0.02:0.25:0.5 b:0.01:0.25:0.5 c:0.01:0.5:0.5 d:0.005:0.5:0.0

Each variant is NAME:LR:CROP_SCALE:DISTILL_WEIGHT. The parent is RUN/gen-GG/offspring-0.pt; one offspring is
sampled once (R 0.93, round_to 8, min_filters 4, seed 7) and every variant trains that same offspring for
one epoch, then is evaluated on the run's validation split.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from host.run.layout import RunLayout  # noqa: E402
from contract.preprocess import PreprocessSpec  # noqa: E402
from host.evolve.data import cache_split, scan_folder  # noqa: E402
from host.evolve.checkpoints import load_weights  # noqa: E402
from host.evolve.surgery import cluster_strengths, inherit  # noqa: E402
from host.evolve.synthesis import sample_offspring, solve_lambda  # noqa: E402
from host.evolve.train import TrainSettings, evaluate, make_optimizer, steps_per_epoch, train_one_epoch  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--generation", type=int, default=3)
    parser.add_argument("variants", nargs="+", help="NAME:LR:CROP_SCALE:DISTILL_WEIGHT")
    args = parser.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    spec = PreprocessSpec.square(config["image_size"])
    split = scan_folder(config["data"], config["val_fraction"], config["seed"])
    train = cache_split(split.train, spec, run / "cache", "train")
    val = cache_split(split.val, spec, run / "cache", "val")
    cpu = torch.device("cpu")
    parent = load_weights(RunLayout(run).offspring_weights(args.generation, 0), "cpu")
    print("parent", evaluate(parent, val, spec, cpu), flush=True)
    strengths = cluster_strengths(parent)
    lam = solve_lambda(strengths, parent.genome.num_classes, 0.93, image_size=spec.height, min_filters=4, round_to=8)
    kept = sample_offspring(strengths, lam, np.random.default_rng(7), min_filters=4, round_to=8)
    print("pruned, untrained", evaluate(inherit(parent, kept), val, spec, cpu), flush=True)
    for variant in args.variants:
        name, lr, crop, distill = variant.split(":")
        child = inherit(parent, kept).to(memory_format=torch.channels_last)
        settings = TrainSettings(epochs=1, lr=float(lr), crop_scale=float(crop), distill_weight=float(distill))
        optimizer, scheduler = make_optimizer(child, settings, steps_per_epoch(len(train), settings.batch_size))
        start = time.time()
        stats = train_one_epoch(child, train, spec, optimizer, scheduler, settings, 1, cpu,
                                teacher=parent if float(distill) > 0 else None)
        print(name, lr, crop, distill, evaluate(child, val, spec, cpu), round(stats["train_top1"], 3),
              f"{time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
