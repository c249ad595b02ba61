"""Telemetry for device-serve: frame counts, fps, per-stage latency percentiles, CPU, and the platform's memory,
GPU memory, temperatures and power (read through device.machine, the one place that probes the platform).
:meth:`Telemetry.snapshot` is what the page, /stats, /metrics (device.prometheus), the reports and --stats-json
show. Python 3.6, numpy only.
"""
import bisect
import collections
import os
import threading
import time

import numpy as np

from device.machine import (NvmlMonitor, TegrastatsMonitor, cuda_mem_get_info_mb, is_jetson, mem_available_mb,
                            process_peak_rss_mb, process_rss_mb, process_started_at, thermal_zones)

STAGES = ("capture", "preprocess", "infer", "postprocess", "overlay", "output")
WINDOW = 2048  # latency samples kept per stage (percentiles are over the most recent ones)
# Prometheus histogram bucket bounds (ms; /metrics says them in seconds): 0.5 ms (TensorRT on a desktop GPU)
# to 5 s (a stalled capture), about 2.5x apart
LATENCY_BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)


class LatencyMeter(object):
    """Recent samples (ms) of one measure; percentiles over the last ``window`` samples; and, over the whole
    run, a histogram (counts per ``LATENCY_BUCKETS_MS`` bucket, sum, count) for Prometheus. Thread-safe."""

    def __init__(self, window=WINDOW):
        self._samples = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self._buckets = [0] * len(LATENCY_BUCKETS_MS)  # per bucket, not cumulative; above the last: count
        self.count = 0
        self.total_ms = 0.0

    def add(self, ms):
        ms = float(ms)
        with self._lock:
            self._samples.append(ms)
            self.count += 1
            self.total_ms += ms
            index = bisect.bisect_left(LATENCY_BUCKETS_MS, ms)  # the first bound >= ms: Prometheus' "le"
            if index < len(self._buckets):
                self._buckets[index] += 1

    def histogram(self):
        """The whole run's histogram: {"le_ms": bounds, "cumulative": counts at or below each, "count", "sum_ms"}."""
        with self._lock:
            buckets, count, total = list(self._buckets), self.count, self.total_ms
        cumulative, running = [], 0
        for value in buckets:
            running += value
            cumulative.append(running)
        return {"le_ms": list(LATENCY_BUCKETS_MS), "cumulative": cumulative, "count": count, "sum_ms": total}

    def summary(self):
        """{p50, p95, p99, mean} in ms (None when empty)."""
        with self._lock:
            samples = np.array(self._samples, dtype=np.float64)
        if samples.size == 0:
            return {"p50": None, "p95": None, "p99": None, "mean": None}
        p50, p95, p99 = np.percentile(samples, [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
                "mean": round(float(samples.mean()), 3)}


class RateMeter(object):
    """Events per second over the whole run and over the last ``window_s`` seconds."""

    def __init__(self, window_s=2.0):
        self.window_s = window_s
        self.started = None
        self.count = 0
        self._times = collections.deque()
        self._lock = threading.Lock()

    def start(self, now=None):
        self.started = time.monotonic() if now is None else now

    def tick(self, now=None):
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.started is None:
                self.started = now
            self.count += 1
            self._times.append(now)
            while self._times and now - self._times[0] > self.window_s:
                self._times.popleft()

    def overall(self, now=None):
        now = time.monotonic() if now is None else now
        if self.started is None or self.count == 0 or now <= self.started:
            return 0.0
        return self.count / (now - self.started)

    def recent(self, now=None):
        now = time.monotonic() if now is None else now
        with self._lock:
            times = [t for t in self._times if now - t <= self.window_s]
        if len(times) < 2:
            return self.overall(now)
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


class CpuMeter(object):
    """Process CPU % since the last call (100 % = one core busy), from os.times()."""

    def __init__(self):
        self._last = self._read()
        self._value = None

    @staticmethod
    def _read():
        times = os.times()
        return time.monotonic(), times[0] + times[1]

    def percent(self, min_interval_s=0.5):
        """CPU % over the interval since the last reading; readings closer than ``min_interval_s`` return the
        previous figure (many callers -- page, /metrics, reports -- must not shrink the interval to noise)."""
        now, cpu = self._read()
        last_now, last_cpu = self._last
        if now - last_now < min_interval_s and self._value is not None:
            return self._value
        if now - last_now <= 0:
            return None
        self._last = (now, cpu)
        self._value = round(100.0 * (cpu - last_cpu) / (now - last_now), 1)
        return self._value


# -- the whole picture --------------------------------------------------------------------------
class Telemetry(object):
    """Everything device-serve measures, in one place. The loop calls :meth:`stage` and :meth:`frame_done`;
    :meth:`snapshot` gives the figures for the page, /stats, /metrics, the reports and --stats-json."""

    def __init__(self, backend_name="", precision="", model_sha256="", platform_monitors=True):
        self.backend_name = backend_name
        self.precision = precision
        self.model_sha256 = model_sha256
        self.stages = collections.OrderedDict((name, LatencyMeter()) for name in STAGES)
        self.total = LatencyMeter()  # capture -> output done, per frame (end-to-end latency)
        self.rate = RateMeter()
        self.dropped = 0
        self.first_frame_at = None  # time.time() of the first classified frame
        self.started_at = time.time()
        self.process_started_at = process_started_at()
        self.last_top = []
        self.cpu = CpuMeter()
        self._cuda_mem = None
        self._extra = {}
        self._lock = threading.Lock()
        self.tegrastats = None
        self.nvml = None
        if platform_monitors:
            if is_jetson():
                self.tegrastats = TegrastatsMonitor()
                if not self.tegrastats.start():
                    self.tegrastats = None
            else:
                self.nvml = NvmlMonitor()
                if not self.nvml.start():
                    self.nvml = None

    def start(self):
        self.rate.start()

    def stage(self, name, ms):
        self.stages[name].add(ms)

    def frame_done(self, total_ms, top=None):
        self.total.add(total_ms)
        self.rate.tick()
        if self.first_frame_at is None:
            self.first_frame_at = time.time()
        if top is not None:
            self.last_top = top

    def set(self, **values):
        """Extra figures from elsewhere (dropped frames, the source, the report spool...)."""
        with self._lock:
            self._extra.update(values)

    def sample_cuda(self, run_in_context=None):
        """Sample pycuda's mem_get_info where the CUDA context lives: ``run_in_context(function)`` is the
        backend's (it runs the call on the backend's CUDA thread); without it, on the calling thread."""
        self.set_device_memory(run_in_context(cuda_mem_get_info_mb) if run_in_context else cuda_mem_get_info_mb())

    def set_device_memory(self, sample):
        """(used, total) MB as a backend reports it (Backend.device_memory_mb); None leaves the last one."""
        if sample is not None:
            self._cuda_mem = sample

    def close(self):
        if self.tegrastats is not None:
            self.tegrastats.close()
        if self.nvml is not None:
            self.nvml.close()

    def histograms(self):
        """The latency histograms over the whole run (for /metrics): {"frame": ..., "stages": {name: ...}}, each
        as :meth:`LatencyMeter.histogram` gives it."""
        return {"frame": self.total.histogram(),
                "stages": collections.OrderedDict((name, meter.histogram()) for name, meter in self.stages.items())}

    def network_fps(self):
        """1000 / mean inference time: what the network alone could do (jetson-inference's "Network FPS")."""
        mean = self.stages["infer"].summary()["mean"]
        return round(1000.0 / mean, 2) if mean else 0.0

    def memory(self):
        """rss_mb, gpu_mem_mb (and where it came from), mem_available_mb, and the platform's extras."""
        result = {"rss_mb": _probe(process_rss_mb), "rss_peak_mb": _probe(process_peak_rss_mb),
                  "mem_available_mb": _probe(mem_available_mb), "gpu_mem_mb": None, "gpu_mem_total_mb": None,
                  "gpu_mem_source": None}
        if self._cuda_mem is not None:
            result["gpu_mem_mb"], result["gpu_mem_total_mb"] = self._cuda_mem
            result["gpu_mem_source"] = "pycuda mem_get_info"
        if self.nvml is not None:
            _merge_gpu_sample(result, self.nvml.sample(), "gpu_mem_used_mb", "gpu_mem_total_mb", "nvml")
        if self.tegrastats is not None and self.tegrastats.latest:
            # Jetson: one memory for CPU and GPU; tegrastats' RAM is the shared pool
            _merge_gpu_sample(result, self.tegrastats.latest, "ram_used_mb", "ram_total_mb",
                              "tegrastats RAM (shared CPU/GPU memory)")
        if "temperatures_c" not in result:
            temps = _probe(thermal_zones)
            if temps:
                result["temperatures_c"] = temps
        return result

    def snapshot(self):
        """The figures now, JSON-ready. The --stats-json contract keys are at the top level."""
        now = time.monotonic()
        total = self.total.summary()
        stages = collections.OrderedDict((name, meter.summary()) for name, meter in self.stages.items())
        memory = self.memory()
        with self._lock:
            extra = dict(self._extra)
        snapshot = {
            "frames": self.rate.count,
            "fps": round(self.rate.overall(now), 2),
            "fps_recent": round(self.rate.recent(now), 2),
            "fps_recent_window_s": self.rate.window_s,  # fps: the whole run; fps_recent: the last window_s
            "network_fps": self.network_fps(),
            "latency_ms": {"p50": total["p50"], "p95": total["p95"], "p99": total["p99"]},
            "stages_ms": stages,
            "dropped": int(extra.pop("dropped", self.dropped)),
            "rss_mb": memory.pop("rss_mb"),
            "gpu_mem_mb": memory.pop("gpu_mem_mb"),
            "cpu_percent": self.cpu.percent(),
            "backend": self.backend_name,
            "precision": self.precision,
            "model_sha256": self.model_sha256,
            "elapsed_s": round(now - self.rate.started, 3) if self.rate.started else 0.0,
            "first_frame_at": self.first_frame_at,
            "started_at": self.started_at,
            "process_started_at": self.process_started_at,
            "top": self.last_top,
            "memory": memory,
        }
        snapshot.update(extra)
        return snapshot


def _probe(read):
    """``read()``, or None when the system cannot answer now (no file descriptor left, /proc gone in a
    container, a sensor that vanished): telemetry never ends a run."""
    try:
        return read()
    except (IOError, OSError, ValueError):
        return None


def _merge_gpu_sample(result, sample, used_key, total_key, source):
    """Take GPU memory from ``sample`` when no earlier source gave it, and its power/load/temperatures."""
    if result["gpu_mem_mb"] is None and used_key in sample:
        result["gpu_mem_mb"], result["gpu_mem_total_mb"] = sample[used_key], sample[total_key]
        result["gpu_mem_source"] = source
    for key in ("power_mw", "gpu_percent", "temperatures_c"):
        if key in sample:
            result[key] = sample[key]
