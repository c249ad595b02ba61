"""Benchmark: evolution steered by measured speed (--target-fps, local) against the same run with a fixed R.

    python bench/steering.py [--speedup 2.0] [--generations 15]

Both runs share one ancestor (trained once, then the run folder is copied), Imagenette at 64 px from the
ImageNet-pretrained SqueezeNet v1.1, 1 epoch per generation, R budgets MACs, round_to 8. The target is
``speedup`` x the ancestor's ONNX Runtime batch-1 fps measured here (median of 3); both runs take that
figure as generation 0's, and measure every later generation as it times its speed ratio to generation 0,
measured alternately (this machine's speed drifts too much for absolute figures taken minutes apart). Prints, for each run, the generation
that first reached the target and its top-1 (or that it did not within the cap).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from bench.machine import describe_machine  # noqa: E402
from contract.generation_files import MODEL_ONNX  # noqa: E402
from host.run.layout import RunLayout  # noqa: E402
SHARED = PROJECT.parent / "shared"
FLAGS = ["--data", str(SHARED / "datasets" / "imagenette"), "--pretrained",
         str(SHARED / "weights" / "squeezenet1_1_imagenet.pth"), "--image-size", "64", "--epochs", "1",
         "--ancestor-epochs", "2", "--env-factor", "0.93", "--env-floor", "0.5", "--budget", "macs",
         "--round-to", "8", "--seed", "0", "--lr", "0.01"]


def evolve(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "host.evolve.cli", *args], check=True, cwd=PROJECT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(PROJECT / "runs" / "bench-steering"))
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--generations", type=int, default=15)
    args = parser.parse_args()
    root = Path(args.root)
    ancestor = root / "ancestor"
    if not (ancestor / "summary.json").is_file():
        evolve(*FLAGS, "--generations", "0", "--out", str(ancestor))
    from host.evolve.latency import local_fps
    from host.run.lineage import Lineage
    base_fps = float(sorted(local_fps(RunLayout(ancestor).generation_dir(0) / MODEL_ONNX, 3.0) for _ in range(3))[1])
    target = round(args.speedup * base_fps)
    print(f"ancestor: {base_fps:.0f} img/s (ONNX Runtime, batch 1, median of 3); target {target} img/s")
    results = {}
    for name, extra in (("steered", []), ("fixed R", ["--fixed-env"])):
        run = root / name.replace(" ", "-")
        if not run.exists():
            shutil.copytree(ancestor, run)
            # one reference for both runs: every later fps is this x a ratio measured side by side with gen 0
            lineage = Lineage(run / "lineage.sqlite")
            lineage.set_steering_fps(0, base_fps, "local")
            lineage.close()
        evolve("--resume", str(run), "--generations", str(args.generations), "--target-fps", str(target),
               "--latency-from", "local", *extra)
        summary = json.loads((run / "summary.json").read_text())
        gens = summary["generations"]
        met = next((g for g in gens if (g["steering_fps"] or 0) >= target), None)
        results[name] = {"reached_at": met["generation"] if met else None, "top1": met["top1"] if met else None,
                         "size_mb": met["size_mb"] if met else None, "fps": met["steering_fps"] if met else None,
                         "ancestor_top1": gens[0]["top1"],
                         "path": [(g["generation"], g["env_factor"], round(g["steering_fps"] or 0), round(g["top1"], 4))
                                  for g in gens]}
    report = {"date": datetime.date.today().isoformat(), "machine": describe_machine(),
              "command": "python bench/steering.py " + " ".join(sys.argv[1:]), "target_fps": target,
              "ancestor_fps": base_fps, "flags": " ".join(FLAGS), "runs": results}
    (root / "steering.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print("| run | generations to reach the target | top-1 there | size there (MB) | fps there |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        if r["reached_at"] is None:
            print(f"| {name} | not within {args.generations} | - | - | - |")
        else:
            print(f"| {name} | {r['reached_at']} | {100 * r['top1']:.1f} % | {r['size_mb']:.3f} | {r['fps']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
