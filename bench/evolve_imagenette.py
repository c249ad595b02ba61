"""Benchmark: the SquishedNets evolution on Imagenette, measured, into docs/benchmarks.md.

    python bench/evolve_imagenette.py                         # preset "default": evolve (41 min here) + measure (~6 min)
    python bench/evolve_imagenette.py --preset quick --run runs/bench-imagenette   # the first, shorter budget
    python bench/evolve_imagenette.py --run RUN --measure-only  # measure an existing run again
    python bench/evolve_imagenette.py --preset compact|tiny     # issue 10's targets (docs/benchmarks.md section 7)

Budget: 112 px; the ancestor is SqueezeNet v1.1 from ../shared/weights/squeezenet1_1_imagenet.pth with
conv10 -> 10 classes; 10 % of every class held out (seed 0). quick and default (the first runs): 15
generations, R = 0.93 on parameters, min_filters 4, distillation from the parent at weight 0.5, epochs, rate,
crops and rounding as in PRESETS below. compact and tiny are host-evolve's own presets (host/evolve/presets.py: R 0.93
on MACs, widths in 16s, distillation from the ancestor, a recovery fine-tune); --strength and --final-epochs
are passed on to host-evolve.

Prints per generation: params, MB, MACs, top-1, device-bench (ONNX Runtime, CPU) images/s at batch 1
and 8; the last generation's speed-up over the ancestor measured alternately (side by side); and the real
training step's throughput against the network's pure compute throughput (forward + backward + step on
a batch already in memory), measured back to back.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from contract.generation_files import OFFSPRING_WEIGHTS, offspring_weights  # noqa: E402,F401
from bench.machine import describe_machine  # noqa: E402
from host.run.layout import RunLayout  # noqa: E402
SHARED = PROJECT.parent / "shared"

COMMON_FLAGS = ["--data", str(SHARED / "datasets" / "imagenette"), "--pretrained",
                str(SHARED / "weights" / "squeezenet1_1_imagenet.pth"), "--image-size", "112", "--generations", "15",
                "--env-factor", "0.93", "--min-filters", "4", "--distill-weight", "0.5",
                "--seed", "0", "--batch-size", "64", "--distill-from", "parent"]  # as they ran (the default is now the ancestor)
# what a user of `host-evolve --preset` gives beside the preset: the data, the weights, the seed
COMMON_PRESET_FLAGS = ["--data", str(SHARED / "datasets" / "imagenette"), "--pretrained",
                       str(SHARED / "weights" / "squeezenet1_1_imagenet.pth"), "--seed", "0"]
PRESETS = {
    # the first budget run: short fine-tunes at a high learning rate and strong crops
    "quick": ["--ancestor-epochs", "3", "--epochs", "2", "--lr", "0.02", "--crop-scale", "0.25", "--round-to", "8"],
    # after an ablation on generation 3 (docs/benchmarks.md): lr 0.01 and crops of >= 50 % recover more per
    # epoch; widths in multiples of 16 (ONNX Runtime's NCHWc block with AVX-512, a multiple of AVX2's 8); R chosen to land on 0.9 MB
    "default": ["--ancestor-epochs", "6", "--epochs", "4", "--lr", "0.01", "--crop-scale", "0.5",
                "--round-to", "16", "--target-mb", "0.9"],
    # issue 10's targets (docs/benchmarks.md section 7): host-evolve's own presets (host/evolve/presets.py), so the
    # bench runs exactly what a user's `host-evolve --preset compact|tiny` runs
    "compact": ["--preset", "compact"],
    "tiny": ["--preset", "tiny"],
}


def device_bench(path: Path, batches=(1, 8), seconds: float = 3.0) -> dict:
    """device-bench's library call with ONNX Runtime on this CPU: {batch: images/s}."""
    from device.bench import bench_model
    result = bench_model(str(path), backend="onnxruntime", precision="fp32", batches=batches, seconds=seconds)
    return {r["batch"]: r["throughput_ips"] for r in result["results"]}


def side_by_side(first: Path, last: Path, rounds: int = 3) -> dict:
    """Ancestor and last generation measured alternately (batch 1, 2 s each), the median ratio: noise cancels
    (host/evolve/latency.py: speed_ratios, what --latency-from local steers with)."""
    from host.evolve.latency import speed_ratios
    ratios = speed_ratios(first, last, seconds=2.0, rounds=rounds)
    return {"rounds": rounds, "ratios": [round(r, 3) for r in ratios], "median": float(np.median(ratios))}


def training_ratio(run: Path, image_size: int, batch_size: int, images: int = 1920) -> dict:
    """The real training step (cached uint8 -> augment -> forward/backward/step) against pure compute
    (the same model and batch on a tensor already in memory), measured back to back, twice each."""
    import torch
    from contract.preprocess import PreprocessSpec
    from host.evolve.data import CachedImages, cache_split, scan_folder
    from host.evolve.checkpoints import load_weights
    from host.evolve.train import TrainSettings, compute_throughput, make_optimizer, train_one_epoch
    config = json.loads((run / "config.json").read_text())
    spec = PreprocessSpec.square(image_size)
    split = scan_folder(config["data"], config["val_fraction"], config["seed"])
    train = cache_split(split.train, spec, run / "cache", "train")
    subset = CachedImages(train.images[:images], train.labels[:images], train.paths[:images], [])
    cpu = torch.device("cpu")
    compute, pipeline = [], []
    for attempt in range(2):
        model = load_weights(RunLayout(run).offspring_weights(0, 0), "cpu").to(memory_format=torch.channels_last)
        compute.append(compute_throughput(model, batch_size, image_size, cpu, steps=images // batch_size))
        settings = TrainSettings(epochs=1, batch_size=batch_size)
        optimizer, scheduler = make_optimizer(model, settings, images // batch_size)
        stats = train_one_epoch(model, subset, spec, optimizer, scheduler, settings, attempt, cpu)
        pipeline.append(stats["images_per_second"])
    return {"compute_images_per_second": max(compute), "training_images_per_second": max(pipeline),
            "training_vs_compute": max(pipeline) / max(compute)}


def measure(run: Path) -> list[dict]:
    """Per generation: device-bench at batch 1 and 8, and its batch-1 speed against the ancestor's measured
    alternately with it (this machine's speed drifts by +-30 % over minutes; the alternation cancels that)."""
    from host.run.lineage import Lineage
    from host.run.report import refresh
    from host.run.layout import RunLayout
    lineage = Lineage(run / "lineage.sqlite")
    generations = lineage.generations()
    ancestor = run / generations[0]["onnx"]
    rows = []
    for g in generations:
        speed = device_bench(run / g["onnx"])
        relative = side_by_side(ancestor, run / g["onnx"], rounds=2)["median"] if g["generation"] else 1.0
        lineage.set_local_fps(g["generation"], speed[1])
        rows.append({"generation": g["generation"], "params": g["params"], "size_mb": g["size_bytes"] / 1e6,
                     "macs_m": g["macs"] / 1e6, "top1": g["top1"], "top5": g["top5"], "ort_batch1": speed[1],
                     "ort_batch8": speed[8], "vs_ancestor_b1": relative, "train_seconds": g["train_seconds"],
                     "onnx": g["onnx"]})
        print(f"gen {g['generation']:02d}: {g['params']:>8,} params {g['size_bytes'] / 1e6:6.3f} MB "
              f"{g['macs'] / 1e6:6.1f} M MACs top-1 {100 * g['top1']:5.1f} %  ORT b1 {speed[1]:7.0f} img/s  "
              f"b8 {speed[8]:7.0f} img/s  b1 vs gen 0 (side by side) {relative:.2f}x", flush=True)
    summary = json.loads((run / "summary.json").read_text())
    refresh(RunLayout(run), lineage, summary["preprocess"], summary["labels"], summary.get("stopped"))
    lineage.close()
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| gen | params | MB | MACs (M) | top-1 % | top-5 % | ORT b1 img/s | ORT b8 img/s | b1 vs gen 0, side by side |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['generation']} | {r['params']:,} | {r['size_mb']:.3f} | {r['macs_m']:.1f} | "
                     f"{100 * r['top1']:.1f} | {100 * r['top5']:.1f} | {r['ort_batch1']:.0f} | {r['ort_batch8']:.0f} | "
                     f"{r['vs_ancestor_b1']:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    from host.evolve.synthesis import STRENGTHS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=None, help="run folder (default runs/bench-imagenette-PRESET)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--measure-only", action="store_true")
    parser.add_argument("--ancestor-from", metavar="WEIGHTS",
                        help="reuse an ancestor trained with the same settings (e.g. another preset's "
                             f"gen-00/{offspring_weights(0)}): host-evolve --ancestor-from WEIGHTS --ancestor-epochs 0")
    parser.add_argument("--strength", choices=STRENGTHS, default=None,
                        help="host-evolve --strength (default: the preset's, filter): what a filter's strength is "
                             "measured by (docs/benchmarks.md 9f, 9h)")
    parser.add_argument("--final-epochs", type=int, default=None, metavar="N",
                        help="host-evolve --final-epochs (default: the preset's): epochs of the recovery fine-tune "
                             "of the last generation (docs/benchmarks.md 9i)")
    args = parser.parse_args()
    run = Path(args.run or PROJECT / "runs" / f"bench-imagenette-{args.preset}")
    flags = (COMMON_PRESET_FLAGS if PRESETS[args.preset][0] == "--preset" else COMMON_FLAGS) + PRESETS[args.preset]
    if args.strength:
        flags = flags + ["--strength", args.strength]
    if args.final_epochs is not None:
        flags = flags + ["--final-epochs", str(args.final_epochs)]
    if args.ancestor_from:  # the same ancestor, not trained again: its weights replace --pretrained's
        at = flags.index("--pretrained")
        flags = flags[:at] + flags[at + 2:] + ["--ancestor-from", args.ancestor_from, "--ancestor-epochs", "0"]
    command = [sys.executable, "-m", "host.evolve.cli", *flags, "--out", str(run)]
    if not args.measure_only:
        if (run / "config.json").is_file():  # resumed with its own settings: a different ask is refused, not dropped
            saved = json.loads((run / "config.json").read_text())
            asked = {"strength": args.strength, "final_epochs": args.final_epochs}
            differ = {k: (saved.get(k), v) for k, v in asked.items() if v is not None and saved.get(k) != v}
            if differ:
                print(f"--run {run} exists with " + ", ".join(f"{k} = {was} (asked {v})" for k, (was, v) in differ.items())
                      + ": give another --run, or the run's own values to resume it", file=sys.stderr)
                return 2
            command = [sys.executable, "-m", "host.evolve.cli", "--resume", str(run)]
        start = time.time()
        subprocess.run(command, check=True, cwd=PROJECT)
        print(f"evolution took {time.time() - start:.0f} s")
    rows = measure(run)
    # training throughput: the ancestor's last epoch (from its checkpointed stats) vs pure compute now
    from host.run.lineage import Lineage
    lineage = Lineage(run / "lineage.sqlite")
    ancestor = lineage.generation(0)
    lineage.close()
    lineage = Lineage(run / "lineage.sqlite")
    epochs = lineage.epochs()
    lineage.close()
    train_ips = {"mean_images_per_second_during_run": float(np.mean([e["images_per_second"] for e in epochs])),
                 "epochs": len(epochs)} if epochs else None
    ratio = training_ratio(run, 112, 64)
    result = {"date": datetime.date.today().isoformat(), "machine": describe_machine(),
              "command": "python bench/evolve_imagenette.py " + " ".join(sys.argv[1:]), "evolve_flags": " ".join(flags),
              "generations": rows, "ancestor_train_seconds": ancestor["train_seconds"], "training": train_ips,
              **ratio}
    first, last = rows[0], rows[-1]
    result["speedup_last_vs_ancestor_ort_b1"] = last["ort_batch1"] / first["ort_batch1"]
    result["speedup_side_by_side_b1"] = side_by_side(run / first["onnx"], run / last["onnx"])
    result["top1_drop_points"] = 100 * (first["top1"] - last["top1"])
    (run / "bench.json").write_text(json.dumps(result, indent=2))
    print(markdown_table(rows))
    print(json.dumps({k: v for k, v in result.items() if k != "generations"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
