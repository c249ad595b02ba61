"""Telemetry for device-serve: frame counts, fps, per-stage latency percentiles, process and GPU memory,
temperature and power where the platform gives them. Python 3.6, numpy only; everything that needs a
platform library (pycuda, NVML, tegrastats) is imported or started lazily and is optional.

Sources of GPU memory, by platform:
* TensorRT backend: pycuda ``mem_get_info`` (free, total) -- must be called on the CUDA thread, so the loop
  calls :meth:`Telemetry.sample_cuda` there;
* desktops: NVML (``nvidia-ml-py``): memory used, power (mW), utilisation, temperature;
* Jetson: ``tegrastats`` (RAM used of total, GR3D %, temperatures, power rails), with /proc/meminfo
  MemAvailable beside it because CPU and GPU share the same memory.
"""
import collections
import os
import re
import subprocess
import threading
import time

import numpy as np

STAGES = ("capture", "preprocess", "infer", "postprocess", "overlay", "output")
WINDOW = 2048  # latency samples kept per stage (percentiles are over the most recent ones)


class LatencyMeter(object):
    """Recent samples (ms) of one measure; percentiles over the last ``window`` samples. Thread-safe."""

    def __init__(self, window=WINDOW):
        self._samples = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0
        self.total_ms = 0.0

    def add(self, ms):
        with self._lock:
            self._samples.append(float(ms))
            self.count += 1
            self.total_ms += float(ms)

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


# -- process ------------------------------------------------------------------------------------
def _proc_status_kb(field, path="/proc/self/status"):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError, IndexError):
        return None
    return None


def process_rss_mb():
    """Resident memory of this process (MB = 2**20 bytes, as ps/top show), or None off Linux."""
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else round(kb / 1024.0, 1)


def process_peak_rss_mb():
    kb = _proc_status_kb("VmHWM")
    return None if kb is None else round(kb / 1024.0, 1)


def process_started_at(pid="self"):
    """Unix time this process started, to 10 ms (now - (uptime - start ticks)), or None off Linux."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        age = uptime - int(fields[19]) / float(os.sysconf("SC_CLK_TCK"))
        return round(time.time() - age, 3)
    except (IOError, OSError, ValueError, IndexError):
        return None


def parse_meminfo(text):
    """/proc/meminfo text -> {field: MB}."""
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if match:
            values[match.group(1)] = round(int(match.group(2)) / 1024.0, 1)
    return values


def mem_available_mb(path="/proc/meminfo"):
    try:
        with open(path) as handle:
            return parse_meminfo(handle.read()).get("MemAvailable")
    except (IOError, OSError):
        return None


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


def thermal_zones(root="/sys/class/thermal"):
    """{zone type: degrees C} from sysfs thermal zones (Jetson and most Linux boards)."""
    temps = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if not name.startswith("thermal_zone"):
            continue
        try:
            with open(os.path.join(root, name, "type")) as handle:
                kind = handle.read().strip()
            with open(os.path.join(root, name, "temp")) as handle:
                temps[kind] = round(int(handle.read().strip()) / 1000.0, 1)
        except (IOError, OSError, ValueError):
            continue
    return temps


def is_jetson():
    return os.path.exists("/etc/nv_tegra_release") or os.path.exists("/sys/module/tegra_fuse")


def platform_info():
    """What the reports say about the machine: hostname, OS, Python, CPU count, Jetson / L4T release."""
    import platform
    info = {"hostname": platform.node(), "system": platform.system(), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count(), "jetson": is_jetson()}
    try:
        with open("/etc/nv_tegra_release") as handle:
            info["l4t"] = handle.readline().strip()
    except (IOError, OSError):
        pass
    try:
        with open("/proc/device-tree/model") as handle:
            info["board"] = handle.read().strip("\x00\n ")
    except (IOError, OSError):
        pass
    return info


# -- tegrastats ----------------------------------------------------------------------------------
def parse_tegrastats(line):
    """One tegrastats line -> {ram_used_mb, ram_total_mb, gpu_percent, emc_percent, cpu_percent (list),
    temperatures_c {name: C}, power_mw {rail: (instant, average)}}; fields missing on a board are absent.

    Example: ``RAM 330/3964MB (lfb 1x4MB) SWAP 0/1982MB CPU [12%@102,off,3%@102,1%@102] EMC_FREQ 0%
    GR3D_FREQ 45% PLL@22C CPU@24.5C GPU@22.5C POM_5V_IN 933/933 POM_5V_GPU 0/0``
    """
    result = {}
    match = re.search(r"\bRAM (\d+)/(\d+)MB", line)
    if match:
        result["ram_used_mb"] = int(match.group(1))
        result["ram_total_mb"] = int(match.group(2))
    match = re.search(r"\bSWAP (\d+)/(\d+)MB", line)
    if match:
        result["swap_used_mb"] = int(match.group(1))
    match = re.search(r"\bCPU \[([^\]]*)\]", line)
    if match:
        cores = []
        for part in match.group(1).split(","):
            core = re.match(r"\s*(\d+)%", part)
            cores.append(int(core.group(1)) if core else None)
        result["cpu_percent"] = cores
    match = re.search(r"\bGR3D_FREQ (\d+)%", line)
    if match:
        result["gpu_percent"] = int(match.group(1))
    match = re.search(r"\bEMC_FREQ (\d+)%", line)
    if match:
        result["emc_percent"] = int(match.group(1))
    temps = {}
    for name, value in re.findall(r"\b([A-Za-z0-9_]+)@(-?\d+(?:\.\d+)?)C\b", line):
        temps[name] = float(value)
    if temps:
        result["temperatures_c"] = temps
    power = {}
    for name, instant, average in re.findall(r"\b((?:POM_|VDD_|VIN_)[A-Za-z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?",
                                             line):
        power[name] = (int(instant), int(average))
    if power:
        result["power_mw"] = power
    return result


class TegrastatsMonitor(object):
    """Runs ``tegrastats --interval MS`` and keeps the newest parsed line. Jetson only; ``start()`` returns
    False (and nothing runs) where tegrastats is missing."""

    def __init__(self, interval_ms=1000, command="tegrastats"):
        self.interval_ms = interval_ms
        self.command = command
        self.latest = {}
        self._process = None
        self._thread = None

    def start(self):
        try:
            self._process = subprocess.Popen([self.command, "--interval", str(self.interval_ms)],
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             universal_newlines=True)
        except (OSError, ValueError):
            return False
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()
        return True

    def _read(self):
        for line in self._process.stdout:
            parsed = parse_tegrastats(line)
            if parsed:
                self.latest = parsed

    def close(self):
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


# -- NVML ---------------------------------------------------------------------------------------
class NvmlMonitor(object):
    """GPU memory, power, utilisation and temperature through NVML (desktop GPUs; not on Jetson)."""

    def __init__(self, index=0):
        self.index = index
        self._nvml = None
        self._handle = None

    def start(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._nvml = pynvml
            return True
        except Exception:  # no nvidia-ml-py, no driver, no GPU: NVML figures are simply absent
            self._nvml = None
            return False

    def sample(self):
        if self._nvml is None:
            return {}
        nvml, handle, result = self._nvml, self._handle, {}
        try:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            result["gpu_mem_used_mb"] = round(memory.used / 2.0 ** 20, 1)
            result["gpu_mem_total_mb"] = round(memory.total / 2.0 ** 20, 1)
        except Exception:
            pass
        try:
            result["power_mw"] = {"gpu": (int(nvml.nvmlDeviceGetPowerUsage(handle)), None)}
        except Exception:
            pass
        try:
            result["gpu_percent"] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
        try:
            result["temperatures_c"] = {"GPU": float(nvml.nvmlDeviceGetTemperature(handle, 0))}
        except Exception:
            pass
        return result

    def close(self):
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None


def cuda_mem_get_info_mb():
    """(used, total) MB from pycuda's mem_get_info, or None. Call only on the CUDA thread."""
    try:
        import pycuda.driver as cuda
        free, total = cuda.mem_get_info()
    except Exception:  # no pycuda, or no context on this thread
        return None
    return round((total - free) / 2.0 ** 20, 1), round(total / 2.0 ** 20, 1)


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
        self.skipped = 0
        self.gaps = 0
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
        sample = run_in_context(cuda_mem_get_info_mb) if run_in_context else cuda_mem_get_info_mb()
        if sample is not None:
            self._cuda_mem = sample

    def close(self):
        if self.tegrastats is not None:
            self.tegrastats.close()
        if self.nvml is not None:
            self.nvml.close()

    def network_fps(self):
        """1000 / mean inference time: what the network alone could do (jetson-inference's "Network FPS")."""
        mean = self.stages["infer"].summary()["mean"]
        return round(1000.0 / mean, 2) if mean else 0.0

    def memory(self):
        """rss_mb, gpu_mem_mb (and where it came from), mem_available_mb, and the platform's extras."""
        result = {"rss_mb": process_rss_mb(), "rss_peak_mb": process_peak_rss_mb(),
                  "mem_available_mb": mem_available_mb(), "gpu_mem_mb": None, "gpu_mem_total_mb": None,
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
            temps = thermal_zones()
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


def _merge_gpu_sample(result, sample, used_key, total_key, source):
    """Take GPU memory from ``sample`` when no earlier source gave it, and its power/load/temperatures."""
    if result["gpu_mem_mb"] is None and used_key in sample:
        result["gpu_mem_mb"], result["gpu_mem_total_mb"] = sample[used_key], sample[total_key]
        result["gpu_mem_source"] = source
    for key in ("power_mw", "gpu_percent", "temperatures_c"):
        if key in sample:
            result[key] = sample[key]
