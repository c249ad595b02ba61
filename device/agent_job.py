"""One device-agent job: fetch a generation host-serve lists (sha256-checked), benchmark it as device-bench
does, and write the body of its ``benchmark`` report, tagged with the platform it was measured on.
The follow loop (device.agent_follow) decides what to run and remembers what ran."""
from contract.errors import DeviceError


def fetch_generation(url, entry, cache_dir, log):
    """The local path of generation ``entry``'s ONNX from ``url`` (cached; checked against the entry's sha256).
    Raises DeviceError when the download fails (the follow loop tries again on its next poll)."""
    from device.model_source import fetch_reference, resolve_model
    path = resolve_model(url, cache_dir=cache_dir, expected_sha256=entry["sha256"], log=log)
    fetch_reference(url, path, log=log)  # so the engine is compared with its ONNX here too (bench --check)
    return path


def benchmark_generation(path, entry, requested, engine, batches, seconds, warmup_s, log, options=None,
                         remeasure=None):
    """device.bench.bench_model on ``path`` with ``engine`` (an EngineOptions, device.engine_options) and
    ``options`` (what else open_backend takes); returns (result, report body). Raises when the engine will not
    build or run, or the cached file is not the listed generation."""
    from device.bench import bench_model
    extra = dict(options or {})
    if remeasure is not None:
        extra["remeasure"] = int(remeasure)
    result = bench_model(path, batches=batches, seconds=seconds, warmup_s=warmup_s, log=log, engine=engine, **extra)
    if result["model_sha256"] != entry["sha256"]:
        raise DeviceError("the cached model has sha256 {}, not {}".format(result["model_sha256"], entry["sha256"]))
    return result, benchmark_report(result, entry, requested)


# -- the platform a figure was measured on ------------------------------------------------------
def platform_of(described, precision):
    """The ``platform`` of a report: the machine (device.machine.platform_info), the GPU's name, the
    backend, precision and versions the figures were measured with, and the power mode where known."""
    from device.machine import nvml_gpu_name, platform_info, power_mode
    info = platform_info()
    gpu_name = (described.get("gpu") or {}).get("name")
    if gpu_name is None and described.get("backend") == "onnxruntime":
        providers = described.get("providers") or []
        if providers and providers[0] != "CPUExecutionProvider":
            gpu_name = nvml_gpu_name()
    info.update({"gpu_name": gpu_name, "device": described.get("device"), "backend": described.get("backend"),
                 "precision": precision, "versions": described.get("versions", {}),
                 "providers": described.get("providers"), "power_mode": power_mode()})
    return info


# -- the report ---------------------------------------------------------------------------------
def benchmark_report(result, entry, requested):
    """The body of a ``benchmark`` report for device.bench.bench_model's ``result`` on generation ``entry``.

    ``stats``: ``fps`` (batch-1 throughput with host-device copies, images/s), ``frames`` (timed batch-1
    runs), ``latency_ms`` {p50, p95, p99} (batch 1, with copies), ``network_fps`` / ``network_latency_ms``
    (network only), ``throughput_ips`` {batch: images/s} for every batch measured, ``measurement``
    ("benchmark-b1": the kind of figure host-serve keeps apart from live ones), ``stable`` / ``cv`` /
    ``unstable_why`` (device.bench.stability of the batch-1 figure, after its re-measurements). ``bench`` is the
    whole result and ``platform`` says where it was measured."""
    by_batch = dict((r["batch"], r) for r in result["results"])
    if 1 not in by_batch:
        raise DeviceError("the benchmark has no batch-1 figure; the report's fps is defined at batch 1")
    one = by_batch[1]
    copies, network = one["with_copies"], one["network_only"]
    described = result["backend"]

    def three(latency):
        return dict((key, latency[key]) for key in ("p50", "p95", "p99"))
    stats = {"frames": int(copies["runs"]), "fps": float(copies["throughput_ips"]),
             "latency_ms": three(copies["latency_ms"]), "batch": 1, "seconds": copies["seconds"],
             "network_fps": float(network["throughput_ips"]), "network_latency_ms": three(network["latency_ms"]),
             "throughput_ips": dict((str(b), by_batch[b]["with_copies"]["throughput_ips"]) for b in sorted(by_batch)),
             "measurement": "benchmark-b1", "stable": bool(one.get("stable", True)),
             "cv": copies.get("stability", {}).get("cv"), "unstable_why": copies.get("stability", {}).get("why"),
             "attempts": one.get("attempts", 1)}
    precision = described.get("precision", requested.get("precision"))
    return {"model_sha256": result["model_sha256"], "generation": entry.get("generation"),
            "backend": described.get("backend"), "precision": precision,
            "platform": platform_of(described, precision), "stats": stats, "bench": result,
            "requested": requested}
