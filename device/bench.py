"""device-bench: bare backend throughput and latency, the ceiling the serve loop is measured against.

Like trtexec: a warm-up (200 ms) then a timed run (>= 3 s by default, and at least 10 runs), per batch size;
throughput and latency p50/p95/p99 with host-device copies (``infer``: what a caller gets) and network-only
(input already on the device; the same figure on a CPU, where there are no copies). Every result carries the
backend, precision and versions it was measured with, and a stability check (:func:`stability`): like trtexec's
warning on unstable GPU compute time, a batch whose run times vary (coefficient of variation above 10 %) or
whose throughput falls short of what its median latency implies is measured again (``remeasure`` times), and
a figure that stays unstable is marked ``"stable": false`` with the reason and what to do. ``bench_model()`` is the library entry (it opens the
model once per engine profile and calls ``benchmark()`` per batch size; host/evolve/latency.py and device-agent call
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
from contract.version import add_version
from contract.generation_files import MODEL_ONNX
from device.engine_options import add_engine_options, engine_options
from device.interruptible import exit_status

MIN_RUNS = 10
# The stability check (trtexec warns above a 1 % coefficient of variation of GPU compute time; a Python loop on
# a CPU or a Jetson without jetson_clocks jitters more, so 10 % here): above it, or when throughput is below
# 80 % of batch / median latency (stalls between runs, a clock that dropped), the figure is not to be trusted.
MAX_CV = 0.10
MIN_AGREEMENT = 0.8
REMEASURE = 2  # extra measurements of an unstable batch before its figure is published as unstable
JETSON_ADVICE = ("run `sudo nvpmodel -m 0 && sudo jetson_clocks` and stop other programs (device-serve, a desktop); "
                 "measure longer with --seconds")
CPU_ADVICE = ("stop other programs using this machine's cores (a training run, a build) and measure longer with "
              "--seconds; on a shared or virtual machine figures vary by tens of percent")


def unstable_advice(jetson=None):
    """What to do about an unstable figure: jetson_clocks on a Jetson only (elsewhere it does not exist)."""
    if jetson is None:
        from device.machine import is_jetson
        jetson = is_jetson()
    return JETSON_ADVICE if jetson else CPU_ADVICE
MAX_BATCH = 1024  # ONNX Runtime on a desktop copes; a Jetson runs out of memory far earlier


def _percentiles(seconds):
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 4), "median": round(float(np.percentile(ms, 50)), 4),
            "p90": round(float(np.percentile(ms, 90)), 4), "p95": round(float(np.percentile(ms, 95)), 4),
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


def stability(times, wall, batch, max_cv=MAX_CV, min_agreement=MIN_AGREEMENT):
    """Whether a measurement can be trusted: ``times`` (seconds per run), ``wall`` (seconds for all of them).

    ``cv``: the coefficient of variation (standard deviation / mean) of the run times, as trtexec reports for
    GPU compute time. ``agreement``: throughput (batch x runs / wall) over what the median latency implies
    (batch / median run time); well below 1 when the wall clock holds stalls the runs do not (a figure of
    12.5 img/s beside a median that implies 2,200). ``stable`` is cv <= ``max_cv`` and agreement >=
    ``min_agreement``; ``why`` says what failed (None when stable)."""
    seconds = np.asarray(times, dtype=np.float64)
    mean, median = float(seconds.mean()), float(np.median(seconds))
    cv = float(seconds.std() / mean) if mean > 0 else 0.0
    implied = batch / median if median > 0 else float("inf")
    throughput = batch * len(seconds) / wall if wall > 0 else 0.0
    agreement = throughput / implied if math.isfinite(implied) and implied > 0 else 1.0
    reasons = []
    if cv > max_cv:
        reasons.append("run times vary with a coefficient of variation of {:.1f} % (stable: at most {:.0f} %)".format(
            100 * cv, 100 * max_cv))
    if agreement < min_agreement:
        reasons.append("throughput {:.1f} img/s is {:.0f} % of what the median latency implies ({:.1f} img/s)".format(
            throughput, 100 * agreement, implied))
    return {"cv": round(cv, 4), "agreement": round(agreement, 4),
            "median_implied_ips": round(implied, 2) if math.isfinite(implied) else None,
            "stable": not reasons, "why": "; ".join(reasons) or None}


def _figures(times, wall, batch):
    return {"runs": len(times), "seconds": round(wall, 4), "throughput_ips": round(batch * len(times) / wall, 2),
            "qps": round(len(times) / wall, 2), "latency_ms": _percentiles(times),
            "stability": stability(times, wall, batch)}


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
    result["stable"] = result["with_copies"]["stability"]["stable"]
    return result


def measure_until_stable(measure, batch, remeasure=REMEASURE, log=None):
    """``measure(batch)`` (a :func:`benchmark` result), again up to ``remeasure`` times while it is unstable;
    the most stable attempt (lowest coefficient of variation) is kept, with ``attempts``. A figure still unstable
    after that is logged as a warning that says why and what to do, and stays ``"stable": false``."""
    result = measure(batch)
    attempts = [result]
    while not result["stable"] and len(attempts) <= remeasure:
        if log is not None:
            log("device-bench: batch {} is unstable ({}); measuring again ({} of {})".format(
                batch, result["with_copies"]["stability"]["why"], len(attempts), remeasure))
        result = measure(batch)
        attempts.append(result)
    stable = [a for a in attempts if a["stable"]]
    best = stable[-1] if stable else min(attempts, key=lambda a: a["with_copies"]["stability"]["cv"])
    best["attempts"] = len(attempts)
    if not best["stable"] and log is not None:
        log("device-bench: warning: batch {} stayed unstable over {} measurements; its figure (the steadiest, "
            "{}) is marked unstable: {}".format(batch, len(attempts), _verdict(best["with_copies"]["stability"]),
                                                 unstable_advice()))
    return best


def profile_groups(batches):
    """The batch sizes grouped by the engine that measures them: batch 1 alone, on a (1, 1, 1) profile like
    device-serve's (it classifies one frame at a time), and the larger ones on one engine up to the largest.
    A TensorRT engine built for batches up to 8 picks other tactics than one built for 1, so a batch-1 figure
    from it would not be the speed device-serve gets."""
    batches = [int(b) for b in batches]
    ones, larger = [b for b in batches if b == 1], [b for b in batches if b > 1]
    return [group for group in (ones, larger) if group]


def batches_for_model(info, batches):
    """(the batch sizes ``info``'s model can run as asked, [(batch, why not)] for the others).

    A model with a fixed batch B runs only B: a figure for another batch would be B-sized runs in disguise.
    The reason names the model and what to give instead (host-evolve's ``model-b1.onnx`` has a dynamic
    ``model.onnx`` beside it)."""
    import os
    fixed = info.fixed_batch
    if fixed is None:
        return list(batches), []
    from contract.generation_files import MODEL_ONNX
    beside = os.path.join(os.path.dirname(info.path), MODEL_ONNX)
    if os.path.basename(info.path) != MODEL_ONNX and os.path.isfile(beside):
        instead = "use {} (dynamic batch) for".format(beside)
    else:
        instead = "give --batch {}, or export it with a dynamic batch dimension, for".format(fixed)
    fit = [b for b in batches if b == fixed]
    refused = [(b, "{} has a fixed batch of {}: {} --batch {}".format(info.path, fixed, instead, b))
               for b in batches if b != fixed]
    return fit, refused


def bench_model(model, backend="auto", precision="fp32", batches=(1,), seconds=3.0, warmup_s=0.2, cache_dir=None,
                log=None, remeasure=REMEASURE, measure=benchmark, check=False, engine=None, output_name=None,
                **options):
    """Benchmark every batch size the model can run; one dict. Each result names the engine profile it was
    measured on (``engine_profile``: None for backends without one) and whether it is ``stable`` (an unstable
    batch is measured again up to ``remeasure`` times: :func:`measure_until_stable`); the top-level ``stable``
    is whether all are. ``measure``: :func:`benchmark` (tests pass a stand-in). Batch sizes a fixed-batch model
    cannot take are listed in ``refused`` (batch, why), told to ``log`` at once, and not measured; when none
    is left, DeviceError. ``engine``: an EngineOptions (device.engine_options) instead of ``backend``,
    ``precision``, ``cache_dir`` and the engine ``options``. ``check``: each engine opened is first compared with the reference outputs stored
    with the model (contract.reference; ``checks``: one agreement dict per engine profile); DeviceError when
    the model has none."""
    from device.backends import open_backend
    from device.engine_options import EngineOptions
    from device.model_source import default_cache_dir, open_model
    if engine is None:
        engine = EngineOptions(backend, precision, options.pop("calibration_dir", None),
                               options.pop("workspace_mb", None), cache_dir)
    opened_model = open_model(model, cache_dir=engine.cache_dir or default_cache_dir(),  # read once, for every profile
                              output_name=output_name)
    if opened_model.output_note and log is not None:
        log("device-bench: " + opened_model.output_note)
    batches, refused = batches_for_model(opened_model, [int(b) for b in batches])
    if not batches:
        raise DeviceError("model " + "; ".join(why for _, why in refused))
    for batch, why in refused:
        if log is not None:
            log("device-bench: batch {} not measured: model {}".format(batch, why))
    results, described, info, checks = [], None, None, []
    for index, group in enumerate(profile_groups(batches)):
        # the backend line once: a second engine profile is the same backend and precision
        opened = open_backend(opened_model, engine=engine, max_batch=max(group),
                              log=log if index == 0 or log is None else _without_backend_line(log), **options)
        try:
            description = opened.describe()
            profile = description.get("engine", {}).get("batch_profile")
            if check and (profile is not None or not checks):  # one check per engine; ONNX Runtime has one
                checks.append(_check(opened, profile, log))
            for batch in group:
                result = measure_until_stable(lambda b: measure(opened, b, seconds, warmup_s), batch, remeasure, log)
                result["engine_profile"] = profile
                results.append(result)
            described = described or description
            info = opened.info
        finally:
            opened.close()
    return {"model": model, "model_sha256": info.sha256, "generation": info.generation, "backend": described,
            "results": sorted(results, key=lambda r: [int(b) for b in batches].index(r["batch"])),  # as asked
            "refused": [{"batch": batch, "why": why} for batch, why in refused],
            "checks": checks if check else None,
            "stable": all(r["stable"] for r in results), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _check(backend, profile, log):
    """The backend's agreement with its model's reference outputs (``engine_profile`` added), told to ``log``."""
    from contract.reference import REFERENCE_FILE, agreement_line
    result = backend.check_reference()
    if result is None:
        raise DeviceError("--check: model {} has no reference outputs beside it ({}: host-evolve writes one with "
                          "every generation); give the model in its generation folder, or leave --check out".format(
                              backend.info.path, REFERENCE_FILE))
    result["engine_profile"] = profile
    if log is not None:
        log("device-bench: check: " + agreement_line(result))
    return result


def _without_backend_line(log):
    return lambda message: None if str(message).startswith("backend: ") else log(message)


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
    add_version(parser, "device-bench")
    parser.add_argument("--model", "--onnx", dest="model", required=True,
                        help="{} path or host-serve URL (#sha256=<hex> optional); --onnx as trtexec".format(MODEL_ONNX))
    parser.add_argument("--output-blob", "--output_blob", dest="output_blob", metavar="NAME",
                        help="the model output that holds the class scores (default: the only one, or of several "
                             "the floating-point scores)")
    parser.add_argument("--batch", default="1", help="batch size or a list, e.g. 1,8 (default 1)")
    parser.add_argument("--seconds", "--duration", dest="seconds", type=float, default=3.0,
                        help="timed duration per batch size, s (default 3; --duration as trtexec)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per batch size (default 0.2)")
    trtexec = parser.add_argument_group("trtexec's flags", "the trtexec spellings a Jetson user types, with their "
                                        "meaning here")
    trtexec.add_argument("--warmUp", dest="warmup_ms", type=float, metavar="MS",
                         help="warm-up in milliseconds, as trtexec (same as --warmup MS/1000)")
    trtexec.add_argument("--fp16", dest="trtexec_precision", action="store_const", const="fp16",
                         help="as --precision fp16")
    trtexec.add_argument("--int8", dest="trtexec_precision", action="store_const", const="int8",
                         help="as --precision int8 (needs --calibration DIR the first time)")
    trtexec.add_argument("--shapes", metavar="NAME:NxCxHxW",
                         help="as trtexec: the input's shape; its N is the batch (as --batch N)")
    trtexec.add_argument("--saveEngine", dest="save_engine", metavar="PATH",
                         help="TensorRT: also copy the engine measured to PATH (it stays cached in --cache-dir)")
    trtexec.add_argument("--loadEngine", dest="load_engine", metavar="PATH",
                         help="not taken: device-bench measures an ONNX and caches its engine (see the error)")
    parser.add_argument("--remeasure", type=int, default=REMEASURE,
                        help="measure an unstable batch again up to N times (default %(default)s; 0: never)")
    parser.add_argument("--check", action="store_true",
                        help="first compare the backend's outputs with the reference outputs stored with the model "
                             "(ONNX Runtime FP32 on a few real images): top-1 agreement and max |difference|; "
                             "exit 1 when they disagree beyond the stated tolerance")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    table = parser.add_argument_group("latency table", "time every layer of the model's SqueezeNet genome at every "
                                      "width the evolution may draw (host-evolve --latency-table reads it)")
    table.add_argument("--layer-table", metavar="OUT.json", default=None,
                       help="measure the latency table instead of the model, and write it here")
    table.add_argument("--layer-table-step", type=int, default=None, metavar="N",
                       help="widths on the table's grid: multiples of N (default the backend's channel block, read "
                            "from the CPU or the precision; 32 keeps a TensorRT table to about 400 engine builds)")
    add_engine_options(parser)
    return parser


def _verdict(check):
    """A :func:`stability` result in a few words: "stable, CV 2.1 %" or "UNSTABLE: CV 46.0 %, throughput 31 %
    of what the median latency implies"."""
    if check["stable"]:
        return "stable, CV {:.1f} %".format(100 * check["cv"])
    return "UNSTABLE: CV {:.1f} %, throughput {:.0f} % of what the median latency implies".format(
        100 * check["cv"], 100 * check["agreement"])


def _summary_lines(report):
    """The text output: where it ran (once; the JSON has every detail), then per batch the throughput and the
    latency figures the JSON has (p50/p95/p99, mean, min, max), the network-only figure and the stability."""
    described = report["backend"]
    lines = ["measured on {}".format(described.get("device", "?"))]  # backend and precision: the backend line
    for result in report["results"]:
        copies, network = result["with_copies"], result["network_only"]
        latency = copies["latency_ms"]
        lines.append("batch {:>3}: {:>10.1f} img/s  latency ms: min {:.3f}, median {:.3f}, mean {:.3f}, p90 {:.3f}, "
                     "p95 {:.3f}, p99 {:.3f}, max {:.3f}  (network only {:.1f} img/s, median {:.3f} ms)  [{} runs in "
                     "{:.2f} s host walltime, coefficient of variation {:.1f} %, {}]".format(
                         result["batch"], copies["throughput_ips"], latency["min"], latency["p50"], latency["mean"],
                         latency.get("p90", latency["p95"]), latency["p95"], latency["p99"], latency["max"],
                         network["throughput_ips"], network["latency_ms"]["p50"], copies["runs"],
                         copies.get("seconds", 0.0), 100 * copies["stability"]["cv"],
                         "stable" if copies["stability"]["stable"] else "UNSTABLE"))
    for refused in report.get("refused", []):
        lines.append("batch {:>3}: not measured: model {}".format(refused["batch"], refused["why"]))
    if not report.get("stable", True):
        lines.append("warning: unstable figures above; " + unstable_advice())
    return lines


def main(argv=None):
    utf8_console()  # labels are UTF-8 whatever the locale (contract.console)
    from device.library_logs import quiet_libraries
    quiet_libraries()  # ONNX Runtime's, OpenCV's and FFmpeg's own warnings: errors only (device/library_logs.py)
    args = get_args_parser().parse_args(argv)
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    try:
        take_trtexec_flags(args)
        engine = engine_options(args)
        if args.save_engine and engine.backend == "onnxruntime":
            raise DeviceError("--saveEngine: the onnxruntime backend builds no TensorRT engine file; use --backend "
                              "tensorrt (or auto) on a machine with TensorRT")
        check_times(args.seconds, args.warmup)
        if not 0 <= args.remeasure <= 10:
            raise DeviceError("--remeasure {} must be between 0 and 10".format(args.remeasure))
        if args.layer_table:
            return _layer_table(args, engine, argv)
        batches = parse_batches(args.batch)
        report = bench_model(args.model, batches=batches, seconds=args.seconds, warmup_s=args.warmup, log=log,
                             output_name=args.output_blob,
                             remeasure=args.remeasure, check=args.check, engine=engine)
        if args.save_engine:
            save_engine(report, args.save_engine, log)
        text = json.dumps(report, indent=2, sort_keys=True)
        if args.out:
            from contract.files import atomic_write
            atomic_write(args.out, text.encode("utf-8"))
    except ContractError as error:
        print("device-bench: error: {}".format(error), file=sys.stderr)
        return exit_status(2, argv is None)
    except KeyboardInterrupt:
        print("device-bench: interrupted", file=sys.stderr)
        return exit_status(130, argv is None)  # at once, should an engine build still run on its thread
    if args.json:
        print(text)
    else:
        for line in _summary_lines(report):
            print(line)
    failed = [c for c in report.get("checks") or [] if not c["ok"]]
    if failed:
        print("device-bench: warning: the {} backend's outputs disagree with the model's reference beyond the "
              "stated tolerance ({} of {} engine(s)); see the check line above".format(
                  report["backend"]["backend"], len(failed), len(report["checks"])), file=sys.stderr)
        return 1
    return 0


def parse_shapes(text):
    """trtexec's ``--shapes=input_0:8x3x112x112`` (one input): (name, [8, 3, 112, 112]). DeviceError otherwise."""
    name, _, dims = str(text).rpartition(":")
    try:
        shape = [int(d) for d in dims.lower().split("x")]
    except ValueError:
        shape = []
    if not name or len(shape) != 4 or min(shape) < 1 or "," in text:
        raise DeviceError("--shapes {!r}: give the one input as NAME:NxCxHxW, e.g. input_0:8x3x112x112 (its N is the "
                          "batch; or give --batch N)".format(text))
    return name, shape


def take_trtexec_flags(args):
    """trtexec's spellings as device-bench's own settings, in place; DeviceError where they contradict the
    others or have no meaning here (--loadEngine)."""
    if args.load_engine:
        raise DeviceError("--loadEngine {}: device-bench measures an ONNX; its engine is built once and kept in the "
                          "cache (--cache-dir) with a record of the ONNX, TensorRT, GPU and settings it was built for, "
                          "and loaded from there. Give --onnx the ONNX that engine was built from".format(
                              args.load_engine))
    if args.trtexec_precision:
        if args.precision not in ("fp32", args.trtexec_precision):
            raise DeviceError("--{} and --precision {} contradict each other: give one".format(
                args.trtexec_precision, args.precision))
        args.precision = args.trtexec_precision
    if args.warmup_ms is not None:
        args.warmup = args.warmup_ms / 1000.0
    if args.shapes:
        name, shape = parse_shapes(args.shapes)
        if args.batch not in ("1", str(shape[0])):
            raise DeviceError("--shapes {} (batch {}) and --batch {} contradict each other: give one".format(
                args.shapes, shape[0], args.batch))
        args.batch = str(shape[0])
        args.shapes_input = name


def save_engine(report, path, log):
    """--saveEngine: the measured TensorRT engine copied to ``path`` (DeviceError on another backend)."""
    import shutil
    described = report.get("backend") or {}
    engine_path = (described.get("engine") or {}).get("path")
    if described.get("backend") != "tensorrt" or not engine_path:
        raise DeviceError("--saveEngine: the {} backend builds no TensorRT engine file; use --backend tensorrt on a "
                          "machine with TensorRT".format(described.get("backend", "?")))
    try:
        shutil.copyfile(engine_path, path)
    except (IOError, OSError) as error:
        raise DeviceError("--saveEngine {}: cannot write it ({})".format(path, getattr(error, "strerror", None) or error))
    log("device-bench: engine saved to {} (TensorRT {}; it loads only with that TensorRT on that GPU)".format(
        path, (described.get("versions") or {}).get("tensorrt", "?")))


def _layer_table(args, engine, argv):
    from device.layer_table import measure_table, summary_lines
    table = measure_table(args.model, args.layer_table, engine, step=args.layer_table_step,
                          log=lambda message: print(message, file=sys.stderr))
    for line in summary_lines(table):
        print(line)
    print("wrote {}: give it to host-evolve --latency-table {}".format(args.layer_table, args.layer_table))
    return 0 if table["check"]["within"] else 1


if __name__ == "__main__":
    sys.exit(main())
