"""device-serve's /metrics: a telemetry snapshot (device.telemetry.Telemetry.snapshot) as Prometheus text."""


def prometheus_text(snapshot, prefix="squishednets"):
    """The snapshot as Prometheus text exposition (version 0.0.4)."""
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append("# HELP {}_{} {}".format(prefix, name, help_text))
        lines.append("# TYPE {}_{} {}".format(prefix, name, kind))
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join('{}="{}"'.format(k, str(v).replace("\\", "\\\\").replace('"', '\\"'))
                                  for k, v in sorted(labels.items()))
            lines.append("{}_{}{} {}".format(prefix, name, "{" + label_text + "}" if label_text else "",
                                             float(value)))

    info = {"backend": snapshot.get("backend", ""), "precision": snapshot.get("precision", ""),
            "model_sha256": snapshot.get("model_sha256", "")}
    metric("info", "gauge", "Backend, precision and model of this device-serve.", [(info, 1)])
    metric("frames_total", "counter", "Frames classified.", [({}, snapshot.get("frames"))])
    metric("dropped_frames_total", "counter", "Frames the camera gave that the loop never took.",
           [({}, snapshot.get("dropped"))])
    metric("fps", "gauge", "End-to-end frames per second (capture to output), whole run.", [({}, snapshot.get("fps"))])
    metric("network_fps", "gauge", "Network-only frames per second (1000 / mean inference ms).",
           [({}, snapshot.get("network_fps"))])
    metric("latency_ms", "gauge", "End-to-end latency per frame, by quantile.",
           [({"quantile": q}, snapshot.get("latency_ms", {}).get(key))
            for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))])
    metric("stage_latency_ms", "gauge", "Latency per loop stage, by quantile.",
           [({"stage": stage, "quantile": q}, figures.get(key))
            for stage, figures in snapshot.get("stages_ms", {}).items()
            for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))])
    metric("rss_megabytes", "gauge", "Resident memory of the serve process.", [({}, snapshot.get("rss_mb"))])
    metric("gpu_memory_megabytes", "gauge", "GPU memory in use (shared memory on Jetson).",
           [({}, snapshot.get("gpu_mem_mb"))])
    metric("cpu_percent", "gauge", "Process CPU use, 100 = one core.", [({}, snapshot.get("cpu_percent"))])
    memory = snapshot.get("memory", {})
    metric("mem_available_megabytes", "gauge", "MemAvailable from /proc/meminfo.",
           [({}, memory.get("mem_available_mb"))])
    metric("temperature_celsius", "gauge", "Temperatures the platform reports.",
           [({"sensor": name}, value) for name, value in sorted((memory.get("temperatures_c") or {}).items())])
    metric("power_milliwatts", "gauge", "Power rails (instant).",
           [({"rail": name}, value[0]) for name, value in sorted((memory.get("power_mw") or {}).items())])
    return "\n".join(lines) + "\n"
