"""Ablation of the compute-aware heredity (host/evolve/synthesis.py step 5): the same ancestor, the same generations,
alpha = 0 (the paper's model) against alpha > 0, side by side, under a size budget (as the presets are).

    python bench/ablate_cost_exponent.py --ancestor runs/compact/gen-00/offspring-0.pt --out runs/ablate-alpha

Each arm is a host-evolve run from the trained ancestor (--ancestor-from, 0 ancestor epochs) on Imagenette at
112 px: --generations 3 --env-factor 0.8 --budget params --epochs 2 --round-to 16, distilled from the ancestor (weight 0.5),
seed 0, so the arms differ only in --cost-exponent. Prints per arm the last generation's top-1, MB, MACs
and its batch-1 speed over the ancestor (ONNX Runtime CPU, measured alternately with it, median of 3
rounds: host/evolve/latency.py speed_ratios). Arms run one after another; a finished arm is resumed, not redone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from contract.generation_files import OFFSPRING_WEIGHTS, offspring_weights  # noqa: E402,F401

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"
FLAGS = ["--image-size", "112", "--generations", "3", "--env-factor", "0.8", "--budget", "params", "--epochs", "2",
         "--ancestor-epochs", "0", "--lr", "0.01", "--crop-scale", "0.5", "--round-to", "16", "--min-filters", "4",
         "--distill-weight", "0.5", "--distill-from", "ancestor", "--seed", "0", "--batch-size", "64"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ancestor", required=True, help=f"a trained host-evolve model (RUN/gen-00/{offspring_weights(0)})")
    parser.add_argument("--data", default=str(SHARED / "datasets" / "imagenette"))
    parser.add_argument("--out", default=str(PROJECT / "runs" / "ablate-alpha"))
    parser.add_argument("--alphas", default="0,0.5", help="comma-separated cost exponents (default 0,0.5)")
    args = parser.parse_args(argv)
    import numpy as np
    from host.evolve.latency import speed_ratios
    from host.run.lineage import Lineage
    rows = []
    for alpha in [float(a) for a in args.alphas.split(",")]:
        run = Path(args.out) / f"alpha-{alpha:g}"
        command = [sys.executable, "-m", "host.evolve.cli", "--resume", str(run)] if (run / "config.json").is_file() else [
            sys.executable, "-m", "host.evolve.cli", "--data", args.data, "--ancestor-from", args.ancestor,
            "--cost-exponent", str(alpha), "--out", str(run), *FLAGS]
        subprocess.run(command, check=True, cwd=PROJECT)
        lineage = Lineage(run / "lineage.sqlite")
        generations = lineage.generations()
        lineage.close()
        first, last = generations[0], generations[-1]
        ratios = speed_ratios(run / first["onnx"], run / last["onnx"], seconds=2.0, rounds=3)
        rows.append({"alpha": alpha, "top1_ancestor": first["top1"], "top1": last["top1"], "mb": last["size_bytes"] / 1e6,
                     "macs_share": last["macs"] / first["macs"], "b1_vs_ancestor": float(np.median(ratios)),
                     "genome": json.loads(last["genome"]) if isinstance(last["genome"], str) else last["genome"]})
    print("| alpha | top-1 % (ancestor) | MB | MACs / ancestor | b1 vs ancestor |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['alpha']:g} | {100 * r['top1']:.1f} ({100 * r['top1_ancestor']:.1f}) | {r['mb']:.3f} | "
              f"{r['macs_share']:.2f} | {r['b1_vs_ancestor']:.2f}x |")
    for r in rows:
        print(f"alpha {r['alpha']:g}: {r['genome']}")
    (Path(args.out) / "ablation.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
