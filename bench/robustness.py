"""Benchmark: issue 15's robustness rows, run as a user would run them, one table.

    python bench/robustness.py small-data [--generations 15]   # 3 Imagenette classes x 30 train (+ 20 val) photos,
                                                               # default flags + --pretrained
    python bench/robustness.py demo [--seeds 0 1 2] [--threads 1 2]   # host-evolve --demo per seed and thread count

small-data: the photos are linked (not copied) from ../shared/datasets/imagenette into a temporary
DIR/train/<class>, DIR/val/<class> tree (the classes drawn by --seed), then ``host-evolve --data DIR --pretrained
../shared/weights/squeezenet1_1_imagenet.pth`` with nothing else. Target (issue 15): the ancestor >= 85 %, no
accepted generation more than 5 points below it.

demo: ``host-evolve --demo --seed S`` with OMP_NUM_THREADS=T. Target: no collapsed generation accepted (every
generation's top-1 within --max-drop of its parent and far from chance) and best_generation within the tolerance.

Prints per run: ancestor top-1, the lowest accepted generation's top-1, generations accepted, best_generation
and why, the stop reason; the wall time. Runs one after another (each is CPU-bound).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from contract.generation_files import LABELS_TXT  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
HOST_EVOLVE = [sys.executable, "-m", "host.evolve.cli"]


def small_tree(root: Path, seed: int, classes: int = 3, train: int = 30, val: int = 20) -> Path:
    source = SHARED / "datasets" / "imagenette" / "train"
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    chosen = sorted(rng.choice(names, size=classes, replace=False))
    for name in chosen:
        files = sorted((source / name).iterdir())
        picked = rng.choice(len(files), size=train + val, replace=False)
        for split, indices in (("train", picked[:train]), ("val", picked[train:])):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in indices:
                (folder / files[i].name).symlink_to(files[i])
    labels = SHARED / "datasets" / "imagenette" / LABELS_TXT
    (root / LABELS_TXT).write_text(labels.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def run(args: list[str], threads: int | None = None) -> tuple[int, float, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.time()
    result = subprocess.run(HOST_EVOLVE + args, cwd=PROJECT, env=env, capture_output=True, text=True)
    return result.returncode, time.time() - start, result.stderr.strip().splitlines()[-1:] and result.stderr.strip().splitlines()[-1]


def describe(run_dir: Path, code: int, seconds: float, last_error: str, label: str) -> dict:
    path = run_dir / "summary.json"
    if not path.is_file():
        return {"run": label, "exit": code, "seconds": round(seconds), "error": last_error}
    summary = json.loads(path.read_text())
    gens = summary["generations"]
    tops = [g["top1"] for g in gens]
    drops = [100 * (a - b) for a, b in zip(tops, tops[1:])]
    return {"run": label, "exit": code, "seconds": round(seconds), "ancestor_top1": round(100 * tops[0], 1),
            "lowest_top1": round(100 * min(tops), 1), "largest_step_drop": round(max(drops, default=0.0), 1),
            "accepted": len(gens) - 1, "size_mb": [round(gens[0]["size_mb"], 3), round(gens[-1]["size_mb"], 3)],
            "best_generation": summary["best_generation"], "best_reason": summary.get("best_reason"),
            "rejected_offspring": len(summary.get("rejected_offspring") or []), "stopped": summary["stopped"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("small-data", "demo"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--generations", type=int, help="passed through (default: host-evolve's own)")
    parser.add_argument("--out", default=str(PROJECT / "runs" / "robustness"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    extra = ["--generations", str(args.generations)] if args.generations is not None else []
    if args.scenario == "small-data":
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                data = small_tree(Path(tmp) / "data", seed)
                run_dir = out / f"small-data-seed{seed}"
                code, seconds, error = run(["--data", str(data), "--out", str(run_dir), "--pretrained",
                                            str(SHARED / "weights" / "squeezenet1_1_imagenet.pth"), *extra])
                rows.append(describe(run_dir, code, seconds, error, f"small-data classes-seed {seed}"))
                print(json.dumps(rows[-1]), flush=True)
    else:
        for threads in args.threads:
            for seed in args.seeds:
                run_dir = out / f"demo-t{threads}-s{seed}"
                code, seconds, error = run(["--demo", "--out", str(run_dir), "--seed", str(seed), *extra], threads)
                rows.append(describe(run_dir, code, seconds, error, f"demo OMP_NUM_THREADS={threads} seed {seed}"))
                print(json.dumps(rows[-1]), flush=True)
    (out / f"{args.scenario}.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
