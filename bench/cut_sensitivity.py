"""How much of a trained SqueezeNet survives a cut, before any training: per layer, and per importance measure.

    python bench/cut_sensitivity.py --ancestor RUN/gen-00/offspring-0.pt            # Imagenette at 112 px
    python bench/cut_sensitivity.py --ancestor M.pt --shares 0.95 0.9 0.8 --layer-share 0.75 --out runs/cut

Why (issue 15): in bench/peers.py's `gentle-112` scale (1-epoch steps of about R 0.69 on size) uniform scaling
and the evolution fell to near chance while Torch-Pruning kept 68 %. This measures the cut itself on the
validation split (10 % of every class, seed 0, as host-evolve and bench/peers.py hold it out):

  (1) the whole net, every layer keeping the same share of its filters, chosen by
      - filter L1: sum |w| over the filter, the project's cluster strength (host/surgery.cluster_strengths),
        what uniform scaling and the heredity model rank by;
      - consumer L1: sum |w| of the weights that READ the filter's output channel (the next squeeze, or both
        expands for a squeeze, or conv10), i.e. how much the rest of the net uses it (the other half of
        Torch-Pruning's group importance, which sums both over the coupled group);
      - their product;
      and Torch-Pruning's L1 group pruning (MetaPruner, the same ratio in every layer) at the same size;
  (2) one layer at a time cut to ``--layer-share`` by filter L1, all others whole: which layers are fragile;
  (3) the evolution's own offspring: ``--draws`` seeded draws of the heredity model (host/evolve/synthesis.py,
      lambda solved for R x the parent's parameters, round_to 8, min_filters 4) at each ``--env-factors`` R,
      with the strength of host-evolve's --strength filter and --strength consumer (the same seeds).

Writes OUT/cut-sensitivity.json and OUT/cut-sensitivity.png; prints both tables. Accuracy only: no timing, so a
shared CPU does not change the figures (it takes ~5 min of one core at 112 px on Imagenette).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
from contract.generation_files import OFFSPRING_WEIGHTS, offspring_weights  # noqa: E402,F401

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"


def kept_by(scores: dict[str, np.ndarray], widths: dict[str, int]) -> dict[str, np.ndarray]:
    """Per layer, the indices of the ``widths[layer]`` highest-scoring filters, in ascending order."""
    return {name: np.sort(np.argsort(-scores[name], kind="stable")[:width]) for name, width in widths.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ancestor", required=True, metavar="MODEL_FILE",
                        help=f"a trained host-evolve model file, e.g. RUN/gen-00/{offspring_weights(0)}")
    parser.add_argument("--data", default=str(SHARED / "datasets" / "imagenette"))
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.95, 0.9, 0.8, 0.7])
    parser.add_argument("--layer-share", type=float, default=0.75)
    parser.add_argument("--env-factors", type=float, nargs="+", default=[0.9, 0.8])
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--out", default=str(PROJECT / "runs" / "cut-sensitivity"))
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from bench.machine import describe_machine
    from bench.peers import Data, ROUND_TO, top1, torch_pruning_shrink, uniform_kept
    from host.evolve.checkpoints import load_ancestor
    from host.evolve.surgery import cluster_strengths, consumer_strengths, inherit
    from host.evolve.synthesis import STRENGTHS, sample_offspring, solve_lambda
    from host.evolve.train import derive_seed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Data(args.data, args.image_size, out / "cache")
    model = load_ancestor(args.ancestor, data.labels, 0.5).eval()
    base = top1(model, data)
    filter_l1, consumer_l1 = cluster_strengths(model), consumer_strengths(model)
    measures = {"filter L1": filter_l1, "consumer L1": consumer_l1,
                "product": {name: filter_l1[name] * consumer_l1[name] for name in filter_l1}}
    whole = []
    for share in tqdm(args.shares, desc="whole net", unit="share"):
        widths = {name: len(kept) for name, kept in uniform_kept(model, share, ROUND_TO).items()}
        row = {"share": share}
        for label, scores in measures.items():
            child = inherit(model, kept_by(scores, widths))
            row["params"] = child.genome.params
            row[label] = top1(child, data)
        try:
            pruned = torch_pruning_shrink(model, row["params"], args.image_size)
            row["torch-pruning"], row["torch-pruning params"] = top1(pruned, data), pruned.genome.params
        except SystemExit:  # the bench extra is not installed
            row["torch-pruning"] = None
        whole.append(row)
    full = {name: len(scores) for name, scores in filter_l1.items()}
    per_layer = []
    for name in tqdm(full, desc=f"one layer at {args.layer_share:.2f}", unit="layer"):
        widths = dict(full, **{name: max(1, int(round(full[name] * args.layer_share)))})
        per_layer.append({"layer": name, "filters": full[name], "kept": widths[name],
                          "top1": top1(inherit(model, kept_by(filter_l1, widths)), data)})
    heredity = []
    for env_factor in tqdm(args.env_factors, desc="heredity draws", unit="R"):
        for kind in STRENGTHS:
            strengths = cluster_strengths(model, kind)
            lam = solve_lambda(strengths, model.genome.num_classes, env_factor, kind="params",
                               image_size=args.image_size, min_filters=4, round_to=ROUND_TO)
            for draw in range(args.draws):
                kept = sample_offspring(strengths, lam, np.random.default_rng(derive_seed(0, draw, 12345)),
                                        min_filters=4, round_to=ROUND_TO)
                child = inherit(model, kept)
                heredity.append({"env_factor": env_factor, "strength": kind, "draw": draw,
                                 "params": child.genome.params, "top1": top1(child, data)})
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python bench/cut_sensitivity.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": describe_machine(), "ancestor": args.ancestor, "ancestor_top1": base,
              "params": model.genome.params, "whole_net": whole, "one_layer": per_layer,
              "heredity": heredity}
    (out / "cut-sensitivity.json").write_text(json.dumps(result, indent=2))
    print(f"ancestor {args.ancestor}: {100 * base:.1f} % top-1, {model.genome.params:,} params")
    print("| share kept | params | filter L1 | consumer L1 | product | Torch-Pruning (params) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in whole:
        tp = "-" if row["torch-pruning"] is None else f"{100 * row['torch-pruning']:.1f} ({row['torch-pruning params']:,})"
        print(f"| {row['share']:.2f} | {row['params']:,} | {100 * row['filter L1']:.1f} | {100 * row['consumer L1']:.1f} "
              f"| {100 * row['product']:.1f} | {tp} |")
    print(f"| layer cut alone to {args.layer_share:.2f} | filters | top-1 % |\n|---|---:|---:|")
    for row in per_layer:
        print(f"| {row['layer']} | {row['filters']} -> {row['kept']} | {100 * row['top1']:.1f} |")
    print("| R | strength | params (mean) | top-1 % of each draw | mean |\n|---:|---|---:|---|---:|")
    for env_factor in args.env_factors:
        for kind in STRENGTHS:
            rows = [r for r in heredity if r["env_factor"] == env_factor and r["strength"] == kind]
            each = " / ".join(f"{100 * r['top1']:.1f}" for r in rows)
            print(f"| {env_factor:.2f} | {kind} | {np.mean([r['params'] for r in rows]):,.0f} | {each} | "
                  f"{100 * np.mean([r['top1'] for r in rows]):.1f} |")
    plot(result, out / "cut-sensitivity.png")
    print(f"{out / 'cut-sensitivity.json'}, {out / 'cut-sensitivity.png'}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 2]})
    chance = 100 / 10
    for label in ("filter L1", "consumer L1", "product", "torch-pruning"):
        points = [(r["share"], 100 * r[label]) for r in result["whole_net"] if r.get(label) is not None]
        if points:
            left.plot(*zip(*points), marker="o", label=label)
    left.axhline(100 * result["ancestor_top1"], color="grey", linestyle="--", label="ancestor")
    left.axhline(chance, color="red", linestyle=":", label="chance (10 classes)")
    left.set(xlabel="share of filters kept in every layer", ylabel="top-1 % right after the cut", ylim=(0, 100),
             title="whole net, before training")
    left.invert_xaxis()
    left.legend(fontsize=8)
    rows = result["one_layer"]
    right.bar(range(len(rows)), [100 * r["top1"] for r in rows], color="tab:blue")
    right.axhline(100 * result["ancestor_top1"], color="grey", linestyle="--")
    right.set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=75, fontsize=7)
    right.set(ylabel="top-1 %", ylim=(0, 100), title="one layer cut by filter L1, the rest whole")
    figure.suptitle(f"cut sensitivity of {Path(result['ancestor']).name}, {result['date'][:10]}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
