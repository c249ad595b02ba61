"""device-serve's /metrics, written by prometheus_client (the Prometheus project's own Python client; 0.17.1 is
its last release for Python 3.6, pinned in docker/requirements-l4t.txt) from a telemetry snapshot
(device.telemetry.Telemetry.snapshot) and the latency histograms (Telemetry.histograms).

Base units (seconds, bytes, watts), histograms for latencies, counters with ``_total``, the standard process
metrics (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...), so ``promtool check metrics``
finds nothing to say (tests/device/test_prometheus.py runs it where Debian's prometheus package is installed).
"""
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST  # text/plain; version=0.0.4; charset=utf-8


def _histogram(name, documentation, labels, series):
    """A HistogramMetricFamily from [(label values, Telemetry histogram dict)]: buckets in seconds."""
    family = HistogramMetricFamily(name, documentation, labels=labels, unit="seconds")
    for values, histogram in series:
        buckets = [("{:g}".format(bound / 1000.0), count)
                   for bound, count in zip(histogram["le_ms"], histogram["cumulative"])]
        buckets.append(("+Inf", histogram["count"]))
        family.add_metric(values, buckets, histogram["sum_ms"] / 1000.0)
    return family


def _gauge(name, documentation, value, unit=""):
    family = GaugeMetricFamily(name, documentation, unit=unit)
    if value is not None:
        family.add_metric([], float(value))
    return family


class TelemetryCollector(object):
    """A prometheus_client collector that reads ``snapshot()`` (and ``histograms()``, when given) per scrape."""

    def __init__(self, snapshot, histograms=None, prefix="squishednets"):
        self.snapshot, self.histograms, self.prefix = snapshot, histograms, prefix

    def describe(self):
        return []  # what collect() yields depends on the platform (temperatures, power rails): nothing fixed

    def collect(self):
        p = self.prefix
        snapshot = self.snapshot()
        memory = snapshot.get("memory") or {}
        yield InfoMetricFamily(p + "_model", "Backend, precision and model of this device-serve.",
                               value={"backend": str(snapshot.get("backend", "")),
                                      "precision": str(snapshot.get("precision", "")),
                                      "model_sha256": str(snapshot.get("model_sha256", ""))})
        for name, key, documentation in (
                ("frames", "frames", "Frames classified."),
                ("dropped_frames", "dropped", "Frames a live source gave that the loop never took.")):
            family = CounterMetricFamily(p + "_" + name, documentation)
            if snapshot.get(key) is not None:
                family.add_metric([], float(snapshot[key]))
            yield family
        yield _gauge(p + "_frames_per_second", "End-to-end frames per second (capture to output), whole run.",
                     snapshot.get("fps"))
        yield _gauge(p + "_network_frames_per_second", "Network-only frames per second (1 / mean inference time).",
                     snapshot.get("network_fps"))
        gpu_mb = snapshot.get("gpu_mem_mb")
        yield _gauge(p + "_gpu_memory_used", "GPU memory in use (the shared memory on a Jetson).",
                     None if gpu_mb is None else gpu_mb * 1e6, unit="bytes")
        available = memory.get("mem_available_mb")
        yield _gauge(p + "_memory_available", "MemAvailable from /proc/meminfo.",
                     None if available is None else available * 1e6, unit="bytes")
        temperatures = GaugeMetricFamily(p + "_temperature", "Temperatures the platform reports.",
                                         labels=["sensor"], unit="celsius")
        for sensor, value in sorted((memory.get("temperatures_c") or {}).items()):
            if value is not None:
                temperatures.add_metric([str(sensor)], float(value))
        yield temperatures
        power = GaugeMetricFamily(p + "_power", "Power per rail (instant).", labels=["rail"], unit="watts")
        for rail, value in sorted((memory.get("power_mw") or {}).items()):
            instant = value[0] if isinstance(value, (list, tuple)) else value
            if instant is not None:
                power.add_metric([str(rail)], float(instant) / 1000.0)
        yield power
        if self.histograms is not None:
            histograms = self.histograms()
            yield _histogram(p + "_frame_latency", "End-to-end latency per frame (capture to output).", [],
                             [([], histograms["frame"])])
            yield _histogram(p + "_stage_latency", "Latency per loop stage.", ["stage"],
                             [([stage], histogram) for stage, histogram in histograms["stages"].items()])


def metrics_registry(snapshot, histograms=None, prefix="squishednets"):
    """A prometheus_client registry of the telemetry (``snapshot``/``histograms``: callables) and the process."""
    registry = CollectorRegistry()
    registry.register(TelemetryCollector(snapshot, histograms, prefix))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def prometheus_text(snapshot, histograms=None, prefix="squishednets"):
    """The snapshot (a dict) and histograms (a dict, or None) as Prometheus text exposition 0.0.4 (str)."""
    registry = metrics_registry(lambda: snapshot, (lambda: histograms) if histograms is not None else None, prefix)
    return generate_latest(registry).decode("utf-8")
