"""device-bench: bare backend throughput and latency, the ceiling the serve loop is measured against.

Like trtexec: a warm-up (200 ms) then a timed run (>= 3 s by default, and at least 10 runs), per batch size;
throughput and latency p50/p95/p99 with host-device copies (``infer``: what a caller gets) and network-only
(input already on the device; the same figure on a CPU, where there are no copies). Every result carries the
backend, precision and versions it was measured with. ``bench_model()`` is the library entry (it opens the
model once per engine profile and calls ``benchmark()`` per batch size; host/latency.py and device-agent call
it); ``main()`` is the console script.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from contract.console import utf8_console
from contract.errors import ContractError, DeviceError
from device.engine_options import add_engine_options, engine_options

MIN_RUNS = 10
MAX_BATCH = 1024  # ONNX Runtime on a desktop copes; a Jetson runs out of memory far earlier


def _percentiles(seconds):
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 4), "p95": round(float(np.percentile(ms, 95)), 4),
            "p99": round(float(np.percentile(ms, 99)), 4), "mean": round(float(ms.mean()), 4),
            "min": round(float(ms.min()), 4), "max": round(float(ms.max()), 4)}


def time_runs(run, seconds, warmup_s, min_runs=MIN_RUNS):
    """Call ``run()`` for ``warmup_s`` untimed, then for ``seconds`` (and >= ``min_runs`` times); per-run seconds."""
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        run()
    times = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < seconds:
        before = time.perf_counter()
        run()
        times.append(time.perf_counter() - before)
    return times, time.perf_counter() - started


def _figures(times, wall, batch):
    return {"runs": len(times), "seconds": round(wall, 4), "throughput_ips": round(batch * len(times) / wall, 2),
            "qps": round(len(times) / wall, 2), "latency_ms": _percentiles(times)}


def benchmark(backend, batch=1, seconds=3.0, warmup_s=0.2, seed=0):
    """Measure ``backend`` at ``batch``; returns a JSON-ready dict.

    ``with_copies``: ``backend.infer`` on a host array (H2D + network + D2H, what a caller sees);
    ``network_only``: the network on data already on the device (equal to ``with_copies`` on a CPU).
    """
    batch = int(batch)
    if batch < 1:
        raise DeviceError("batch {} must be at least 1".format(batch))
    shape = (batch,) + tuple(backend.input_shape[1:])
    images = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    result = {"batch": batch, "backend": backend.name, "precision": backend.precision,
              "warmup_s": warmup_s, "duration_s": seconds}

    def with_copies():
        return time_runs(lambda: backend.infer(images), seconds, warmup_s)
    times, wall = backend.run_in_context(with_copies)
    result["with_copies"] = _figures(times, wall, batch)
    network = backend.network_only(images)
    if network is None:
        result["network_only"] = dict(result["with_copies"], note="no host-device copies on this backend")
    else:
        times, wall = backend.run_in_context(lambda: time_runs(network, seconds, warmup_s))
        result["network_only"] = _figures(times, wall, batch)
    result["throughput_ips"] = result["with_copies"]["throughput_ips"]
    result["latency_ms"] = result["with_copies"]["latency_ms"]
    return result


def profile_groups(batches):
    """The batch sizes grouped by the engine that measures them: batch 1 alone, on a (1, 1, 1) profile like
    device-serve's (it classifies one frame at a time), and the larger ones on one engine up to the largest.
    A TensorRT engine built for batches up to 8 picks other tactics than one built for 1, so a batch-1 figure
    from it would not be the speed device-serve gets."""
    batches = [int(b) for b in batches]
    ones, larger = [b for b in batches if b == 1], [b for b in batches if b > 1]
    return [group for group in (ones, larger) if group]


def bench_model(model, backend="auto", precision="fp32", batches=(1,), seconds=3.0, warmup_s=0.2, cache_dir=None,
                log=None, **options):
    """Benchmark every batch size; one dict. Each result names the engine profile it was measured on
    (``engine_profile``: None for backends without one)."""
    from device.backends import open_backend
    results, described, info = [], None, None
    for group in profile_groups(batches):
        opened = open_backend(model, backend, precision, max_batch=max(group), cache_dir=cache_dir, log=log,
                              **options)
        try:
            description = opened.describe()
            profile = description.get("engine", {}).get("batch_profile")
            for batch in group:
                result = benchmark(opened, batch, seconds, warmup_s)
                result["engine_profile"] = profile
                results.append(result)
            described = described or description
            info = opened.info
        finally:
            opened.close()
    return {"model": model, "model_sha256": info.sha256, "generation": info.generation, "backend": described,
            "results": sorted(results, key=lambda r: [int(b) for b in batches].index(r["batch"])),  # as asked
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def parse_batches(text):
    try:
        batches = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise DeviceError("--batch {!r} is not a batch size or a list like 1,8".format(text))
    if not batches or min(batches) < 1:
        raise DeviceError("--batch {!r}: batch sizes must be integers >= 1, e.g. 1 or 1,8".format(text))
    if max(batches) > MAX_BATCH:
        raise DeviceError("--batch {}: at most {} images a run (a batch of {} 224x224 images is {:.1f} GB of input "
                          "alone); give e.g. 1,8,32".format(max(batches), MAX_BATCH, max(batches),
                                                            max(batches) * 3 * 224 * 224 * 4 / 1e9))
    if len(batches) > 16:
        raise DeviceError("--batch {!r}: at most 16 batch sizes in one run".format(text))
    return batches


def check_times(seconds, warmup):
    """--seconds in (0, 3600], --warmup in [0, 600], both finite."""
    if not (math.isfinite(seconds) and 0 < seconds <= 3600):
        raise DeviceError("--seconds {} must be above 0 and at most 3600 (timed seconds per batch size)".format(
            seconds))
    if not (math.isfinite(warmup) and 0 <= warmup <= 600):
        raise DeviceError("--warmup {} must be between 0 and 600 (seconds per batch size)".format(warmup))


def get_args_parser():
    parser = argparse.ArgumentParser(prog="device-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model.onnx path or host-serve URL (#sha256=<hex> optional)")
    parser.add_argument("--batch", default="1", help="batch size or a list, e.g. 1,8 (default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed duration per batch size (default 3)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per batch size (default 0.2)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    add_engine_options(parser)
    return parser


def _summary_lines(report):
    described = report["backend"]
    lines = ["{} {} on {} ({})".format(described["backend"], described["precision"], described.get("device", "?"),
                                       described["why"])]
    for result in report["results"]:
        copies, network = result["with_copies"], result["network_only"]
        lines.append("batch {:>3}: {:>10.1f} img/s  latency p50 {:.3f} p95 {:.3f} p99 {:.3f} ms  "
                     "(network only {:.1f} img/s, p50 {:.3f} ms)".format(
                         result["batch"], copies["throughput_ips"], copies["latency_ms"]["p50"],
                         copies["latency_ms"]["p95"], copies["latency_ms"]["p99"], network["throughput_ips"],
                         network["latency_ms"]["p50"]))
    return lines


def main(argv=None):
    utf8_console()  # labels are UTF-8 whatever the locale (contract.console)
    args = get_args_parser().parse_args(argv)
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    try:
        options = engine_options(args)
        check_times(args.seconds, args.warmup)
        batches = parse_batches(args.batch)
        report = bench_model(args.model, args.backend, args.precision, batches, args.seconds,
                             args.warmup, args.cache_dir, log, **options)
        text = json.dumps(report, indent=2, sort_keys=True)
        if args.out:
            from contract.files import atomic_write
            atomic_write(args.out, text.encode("utf-8"))
    except ContractError as error:
        print("device-bench: error: {}".format(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("device-bench: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(text)
    else:
        for line in _summary_lines(report):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
