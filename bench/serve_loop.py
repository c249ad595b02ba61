"""Does the serve loop keep up with the bare backend? (ISSUE 4's benchmark)

    python bench/serve_loop.py --model RUN/gen-00/model.onnx [--backend onnxruntime] [--seconds 10]
                               [--video clip.mp4] [--json out.json]

From a video file at batch 1 with the same model and backend, it measures
1. device-bench's throughput (the ceiling: ``device.bench.benchmark``), before and after the loop, averaged;
2. device-serve's end-to-end fps over the same seconds (its own process, --stats-json);
3. the ratio loop fps / bench throughput (aim >= 0.95), the serve process's RSS (aim <= 250 MB with
   ONNX Runtime on CPU), and the time from spawning device-serve to its first classified frame.
Without --video it writes a 640x480 MJPEG clip of the synthetic scene first (not timed).
Prints a table and the JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)
from contract.precisions import PRECISIONS  # noqa: E402


def write_clip(path, frames=300, width=640, height=480):
    import cv2
    from device.sources import SyntheticSource
    source = SyntheticSource(width=width, height=height)
    source.open()
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for _ in range(frames):
        writer.write(source.read())
    writer.release()
    return path


def bare_throughput(model, backend, precision, seconds):
    from device.backends import open_backend
    from device.bench import benchmark
    opened = open_backend(model, backend=backend, precision=precision, max_batch=1, log=None)
    try:
        return benchmark(opened, batch=1, seconds=seconds, warmup_s=0.5)["throughput_ips"]
    finally:
        opened.close()


def serve_run(model, backend, precision, video, seconds, folder):
    stats_path = os.path.join(folder, "serve-stats.json")
    command = [sys.executable, "-m", "device.serve", "--model", model, "--backend", backend, "--precision", precision,
               "--source", video, "--loop", "--duration", str(seconds), "--status-every", "0", "--headless",
               "--stats-json", stats_path]
    spawned = time.time()
    done = subprocess.run(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if done.returncode != 0:
        raise SystemExit("device-serve failed ({}):\n{}".format(done.returncode, done.stderr))
    with open(stats_path) as handle:
        stats = json.load(handle)
    stats["first_frame_after_spawn_s"] = round(stats["first_frame_at"] - spawned, 3)
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt"))
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default %(default)s)")
    parser.add_argument("--video", help="a video file (default: a synthetic 640x480 clip written first)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        video = args.video or write_clip(os.path.join(folder, "clip.avi"))
        before = bare_throughput(args.model, args.backend, args.precision, args.seconds)
        stats = serve_run(args.model, args.backend, args.precision, video, args.seconds, folder)
        after = bare_throughput(args.model, args.backend, args.precision, args.seconds)
    ceiling = (before + after) / 2.0
    figures = {
        "model": args.model, "backend": stats["backend"], "precision": stats["precision"], "batch": 1,
        "video": args.video or "synthetic 640x480 MJPEG clip", "seconds": args.seconds,
        "bench_throughput_ips": round(ceiling, 2), "bench_before_ips": round(before, 2),
        "bench_after_ips": round(after, 2), "loop_fps": stats["fps"], "loop_network_fps": stats["network_fps"],
        "loop_over_bench": round(stats["fps"] / ceiling, 3) if ceiling else None,
        "rss_mb": stats["rss_mb"], "rss_peak_mb": stats["memory"].get("rss_peak_mb"),
        "first_frame_after_spawn_s": stats["first_frame_after_spawn_s"], "startup_s": stats.get("startup_s"),
        "latency_ms": stats["latency_ms"], "stages_ms_p50": {k: v["p50"] for k, v in stats["stages_ms"].items()},
        "frames": stats["frames"], "dropped": stats["dropped"], "cpus": os.cpu_count(),
    }
    rows = [("device-bench throughput (img/s, batch 1)", figures["bench_throughput_ips"]),
            ("device-serve loop fps (end-to-end)", figures["loop_fps"]),
            ("loop / bench (aim >= 0.95)", figures["loop_over_bench"]),
            ("serve RSS at end / peak (MB, aim <= 250)", "{} / {}".format(figures["rss_mb"], figures["rss_peak_mb"])),
            ("spawn -> first classified frame (s)", figures["first_frame_after_spawn_s"]),
            ("latency p50 / p99 (ms)", "{} / {}".format(figures["latency_ms"]["p50"], figures["latency_ms"]["p99"]))]
    rows += [("  stage {} p50 (ms)".format(k), v) for k, v in figures["stages_ms_p50"].items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print("{}  {}".format(name.ljust(width), value))
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
