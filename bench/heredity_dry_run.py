"""A dry run of the heredity model, no training: where a preset's R, budget and size target take the widths.

    python bench/heredity_dry_run.py --budget macs --env-factor 0.93 --round-to 16 --target-mb 0.95
    python bench/heredity_dry_run.py --budget macs --env-factor 0.93 --round-to 16 --target-mb 0.95 --cost-exponent 0.5

From SqueezeNet v1.1 with the ImageNet weights (conv10 -> 10 classes), generation after generation: lambda
solved for R (host/evolve/synthesis.py), one seeded draw, the kept filters inherited, R steered by the size rule
(host/evolve/steering.py) until the size target is met. Strengths come from the pretrained weights and are not
trained between generations, so this shows where the rules send the widths (generations to the target,
MACs against size), not top-1. Seconds on a CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"


def dry_run(budget: str, env_factor: float, generations: int, target_mb: float, round_to: int, min_filters: int = 4,
            image_size: int = 112, seed: int = 0, env_floor: float = 0.5, cost_exponent: float = 0.0,
            pretrained: str = str(SHARED / "weights" / "squeezenet1_1_imagenet.pth")):
    """[(generation, R, MB, MACs / gen 0)], and the last genome."""
    import numpy as np
    import torch
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet, load_pretrained
    from host.evolve.steering import steer_by_size
    from host.evolve.surgery import cluster_strengths, inherit
    from host.evolve.synthesis import layer_scales, sample_offspring, solve_lambda
    from host.evolve.train import derive_seed
    model = SqueezeNet(Genome.squeezenet1_1(10))
    torch.manual_seed(derive_seed(seed, 0, 0, 999))
    model.reset_parameters()
    load_pretrained(model, pretrained)
    first, env, rows = model.genome, env_factor, []
    for generation in range(1, generations + 1):
        strengths = cluster_strengths(model)
        scales = layer_scales(strengths, 10, image_size, cost_exponent)
        lam = solve_lambda(strengths, 10, env, kind=budget, image_size=image_size, min_filters=min_filters,
                           round_to=round_to, scales=scales)
        kept = sample_offspring(strengths, lam, np.random.default_rng(derive_seed(seed, generation, 0, 12345)),
                                min_filters=min_filters, round_to=round_to, scales=scales)
        model = inherit(model, kept)
        rows.append((generation, env, model.genome.size_bytes / 1e6, model.genome.macs(image_size) / first.macs(image_size)))
        if target_mb <= 0 or generation == generations:
            continue
        env, stop = steer_by_size(generation, model.genome.size_bytes, target_mb, generations - generation, env, env_floor)
        if stop:
            break
    return rows, model.genome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=("params", "macs"), default="params")
    parser.add_argument("--env-factor", type=float, default=0.93)
    parser.add_argument("--generations", type=int, default=15)
    parser.add_argument("--target-mb", type=float, default=0.0)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--min-filters", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--cost-exponent", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows, genome = dry_run(args.budget, args.env_factor, args.generations, args.target_mb, args.round_to,
                           args.min_filters, args.image_size, args.seed, cost_exponent=args.cost_exponent)
    for generation, env, mb, macs in rows:
        print(f"gen {generation:2d}  R {env:.3f}  {mb:.3f} MB  MACs {macs:.2f}x gen 0")
    print("last genome:", genome.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
