"""Benchmark: which cheap score predicts a candidate offspring's trained top-1 (issue 15, selection)?

    python bench/proxy_correlation.py --ancestor RUN/gen-00/offspring-0.pt [--env-factor 0.8] [--candidates 8]

From one trained parent, draws ``--candidates`` offspring from the heredity model (host/evolve/synthesis.py, the same
lambda, seeds 0..M-1) plus the heredity model's most likely offspring drawn without chance
(host/evolve/selection.py: strongest_offspring), scores each by the proxies of host/evolve/selection.py, then trains every
one fully (``--epochs`` of the measured recipe: SGD lr 0.01 at batch 64, warm-up + cosine, crops >= 50 %,
distillation from the parent at 0.5) and evaluates top-1 on the held-out split. Prints each candidate's row and
Spearman's rank correlation of every proxy with the trained top-1 (losses negated, so +1 means "ranks
perfectly"), and the cost of each proxy in training-image equivalents.

Proxies: fidelity = KL(parent || candidate) on P fixed training images right after inheritance (forward passes
only); tuned = cross-entropy and top-1 on those images after S steps of distillation from the parent.
Resumable: every finished candidate is kept in OUT/candidates.json and skipped on a rerun.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from contract.generation_files import OFFSPRING_WEIGHTS, offspring_weights  # noqa: E402,F401

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ancestor", required=True, help=f"a host-evolve model file (RUN/gen-XX/{OFFSPRING_WEIGHTS.format('K')})")
    parser.add_argument("--data", default=str(SHARED / "datasets" / "imagenette"))
    parser.add_argument("--cache", help="a decoded-image cache to reuse (default: beside the ancestor's run)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--env-factor", type=float, default=0.8)
    parser.add_argument("--budget", default="params", choices=("params", "macs"))
    parser.add_argument("--round-to", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--proxy-images", type=int, default=512)
    parser.add_argument("--tune-steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(PROJECT / "runs" / "proxy-correlation"))
    args = parser.parse_args()

    from contract.preprocess import PreprocessSpec
    from host.evolve.checkpoints import load_weights
    from host.evolve.data import cache_split, scan_folder
    from host.evolve.selection import (FORWARD_SHARE, ProxySet, fidelity, heldout_scores, logits_on, short_distillation,
                                spearman, strongest_offspring)
    from host.evolve.surgery import cluster_strengths, inherit
    from host.evolve.synthesis import sample_offspring, solve_lambda
    from host.evolve.train import TrainSettings, derive_seed, evaluate, make_optimizer, steps_per_epoch, train_one_epoch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "candidates.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    device = torch.device("cpu")
    spec = PreprocessSpec.square(args.image_size)
    split = scan_folder(args.data, 0.1, args.seed)
    cache = Path(args.cache) if args.cache else Path(args.ancestor).resolve().parents[1] / "cache"
    train, val = cache_split(split.train, spec, cache, "train"), cache_split(split.val, spec, cache, "val")
    parent = load_weights(args.ancestor, "cpu").eval()
    num_classes = parent.genome.num_classes
    strengths = cluster_strengths(parent)
    lam = solve_lambda(strengths, num_classes, args.env_factor, kind=args.budget, image_size=args.image_size,
                       min_filters=4, round_to=args.round_to)
    draws = {f"draw-{j}": sample_offspring(strengths, lam, np.random.default_rng(derive_seed(args.seed, 1, 0, 12345, j)),
                                           min_filters=4, round_to=args.round_to) for j in range(args.candidates)}
    draws["strongest"] = strongest_offspring(strengths, lam, min_filters=4, round_to=args.round_to)
    proxy = ProxySet.draw(train, args.proxy_images, derive_seed(args.seed, 777))
    parent_logits = logits_on(parent, train, proxy.score, spec, device)
    labels = train.labels[proxy.score]
    print(f"parent {parent.genome.params:,} params; lambda {lam:.4f} for R = {args.env_factor} ({args.budget}); "
          f"{len(draws)} candidates; proxy on {len(proxy.score)} images, {args.tune_steps} tuning steps", flush=True)
    for name, kept in draws.items():
        if name in results:
            continue
        start = time.time()
        candidate = inherit(parent, kept)
        row = {"params": candidate.genome.params, "macs": candidate.genome.macs(args.image_size)}
        logits = logits_on(candidate, train, proxy.score, spec, device)
        row["fidelity_kl"] = fidelity(logits, parent_logits)
        row["zero_shot_loss"], row["zero_shot_top1"] = heldout_scores(logits, labels)
        tuned = inherit(parent, kept)
        seen = short_distillation(tuned, parent, train, proxy.tune, spec, args.tune_steps, 64, 0.01,
                                  derive_seed(args.seed, 31), device)
        row["tuned_loss"], row["tuned_top1"] = heldout_scores(logits_on(tuned, train, proxy.score, spec, device), labels)
        row["proxy_cost_images"] = {"fidelity": len(proxy.score) * 2 * FORWARD_SHARE,
                                    "tuned": seen + len(proxy.score) * FORWARD_SHARE}
        settings = TrainSettings(epochs=args.epochs, batch_size=64, lr=0.01, crop_scale=0.5, distill_weight=0.5)
        model = candidate.to(memory_format=torch.channels_last)
        optimizer, scheduler = make_optimizer(model, settings, args.epochs * steps_per_epoch(len(train), 64))
        for epoch in range(args.epochs):
            train_one_epoch(model, train, spec, optimizer, scheduler, settings, derive_seed(args.seed, 1, 0, epoch),
                            device, parent, desc=f"{name} epoch {epoch + 1}/{args.epochs}")
        row["trained_top1"] = evaluate(model, val, spec, device)["top1"]
        row["seconds"] = round(time.time() - start)
        results[name] = row
        results_path.write_text(json.dumps(results, indent=2))
        print(json.dumps({name: row}), flush=True)

    names = [n for n in results if n.startswith("draw-")]
    trained = [results[n]["trained_top1"] for n in names]
    print(f"\n{len(names)} random draws: trained top-1 {100 * min(trained):.1f} .. {100 * max(trained):.1f} %"
          + (f"; strongest (no chance): {100 * results['strongest']['trained_top1']:.1f} %" if "strongest" in results else ""))
    print("| proxy | Spearman with trained top-1 (random draws) | cost, training-image equivalents |")
    print("|---|---:|---:|")
    for proxy_name, sign, cost in (("fidelity_kl", -1, "fidelity"), ("zero_shot_loss", -1, "fidelity"),
                                   ("zero_shot_top1", 1, "fidelity"), ("tuned_loss", -1, "tuned"),
                                   ("tuned_top1", 1, "tuned")):
        rho = spearman([sign * results[n][proxy_name] for n in names], trained)
        print(f"| {proxy_name} | {rho:+.2f} | {results[names[0]]['proxy_cost_images'][cost]:.0f} |")
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "candidates": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
