"""What this machine is and what it has now: process and system memory, GPU memory, temperatures, power mode,
the Jetson's tegrastats and a desktop GPU's NVML. The one place the device side probes its platform: telemetry
(device-serve's figures), the TensorRT backend's description and the agent's report ``platform`` all read it.

Python 3.6, stdlib only. Everything that needs a platform library or tool (pycuda, nvidia-ml-py, tegrastats,
nvpmodel) is imported or started lazily and is optional: where it is missing, its figures are absent (None),
never an error.

Sources of GPU memory, by platform:
* TensorRT backend: pycuda ``mem_get_info`` (free, total) -- must be called on the CUDA thread
  (:func:`cuda_mem_get_info_mb`, which the loop runs there);
* desktops: NVML (``nvidia-ml-py``): memory used, power (mW), utilisation, temperature (:class:`NvmlMonitor`);
* Jetson: ``tegrastats`` (RAM used of total, GR3D %, temperatures, power rails; :class:`TegrastatsMonitor`),
  with /proc/meminfo MemAvailable beside it because CPU and GPU share the same memory.
"""
import os
import re
import subprocess
import threading
import time


# -- process ------------------------------------------------------------------------------------
def _proc_status_kb(field, path="/proc/self/status"):
    try:
        with open(path, encoding="utf-8") as handle:
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
        with open("/proc/{}/stat".format(pid), encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="utf-8") as handle:
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
        with open(path, encoding="utf-8") as handle:
            return parse_meminfo(handle.read()).get("MemAvailable")
    except (IOError, OSError):
        return None



# -- the board ------------------------------------------------------------------------------------
def thermal_zones(root="/sys/class/thermal"):
    """{zone type: degrees C} from sysfs thermal zones (Jetson and most Linux boards)."""
    temps = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if not name.startswith("thermal_zone"):
            continue
        try:
            with open(os.path.join(root, name, "type"), encoding="utf-8") as handle:
                kind = handle.read().strip()
            with open(os.path.join(root, name, "temp"), encoding="utf-8") as handle:
                temps[kind] = round(int(handle.read().strip()) / 1000.0, 1)
        except (IOError, OSError, ValueError):
            continue
    return temps


def is_jetson():
    return os.path.exists("/etc/nv_tegra_release") or os.path.exists("/sys/module/tegra_fuse")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (/proc/cpuinfo "flags" on x86, "Features" on ARM), a sorted list; [] when
    unreadable. Read, never assumed: ONNX Runtime's channel block follows them (contract.latency_table)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return sorted(set(value.split()))
    except (IOError, OSError):
        pass
    return []


def platform_info():
    """What the reports say about the machine: hostname, OS, Python, CPU count, Jetson / L4T release."""
    import platform
    info = {"hostname": platform.node(), "system": platform.system(), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count(), "jetson": is_jetson()}
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8") as handle:
            info["l4t"] = handle.readline().strip()
    except (IOError, OSError):
        pass
    try:
        with open("/proc/device-tree/model", encoding="utf-8") as handle:
            info["board"] = handle.read().strip("\x00\n ")
    except (IOError, OSError):
        pass
    return info



def parse_nvpmodel_query(text):
    """``nvpmodel -q`` output -> {"name", "id"} (either may be None) or None when it names no mode.

    JetPack prints e.g. ``NV Fan Mode:quiet`` / ``NV Power Mode: MAXN`` / ``0`` (warnings may come first)."""
    name, mode_id = None, None
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r"^NV Power Mode\s*:\s*(.+)$", line)
        if match:
            name = match.group(1).strip()
        elif re.match(r"^\d+$", line) and mode_id is None:
            mode_id = int(line)
    if name is None and mode_id is None:
        return None
    return {"name": name, "id": mode_id}


def parse_nvpmodel_conf(text):
    """/etc/nvpmodel.conf -> {"modes": {id: name}, "default": id or None}."""
    modes = {}
    for match in re.finditer(r"<\s*POWER_MODEL\s+ID\s*=\s*(\d+)\s+NAME\s*=\s*([^\s>]+)", text):
        modes[int(match.group(1))] = match.group(2)
    default = re.search(r"<\s*PM_CONFIG\s+DEFAULT\s*=\s*(\d+)", text)
    return {"modes": modes, "default": int(default.group(1)) if default else None}


def power_mode(command=("nvpmodel", "-q"), conf_path="/etc/nvpmodel.conf",
               status_path="/var/lib/nvpmodel/status", timeout_s=5.0):
    """The Jetson power mode as {"name", "id", "source"}, or None where the board has no nvpmodel (TX1, desktops).

    ``nvpmodel -q`` first; else the mode id saved in ``status_path`` named through ``conf_path``; else the
    conf's default mode (``source`` says which)."""
    try:
        done = subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout_s)
        parsed = parse_nvpmodel_query(done.stdout) if done.returncode == 0 else None
        if parsed is not None:
            parsed["source"] = " ".join(command)
            return parsed
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open(conf_path, encoding="utf-8") as handle:
            conf = parse_nvpmodel_conf(handle.read())
    except (IOError, OSError):
        return None
    try:
        with open(status_path, encoding="utf-8") as handle:
            match = re.search(r"pmode\s*:\s*(\d+)", handle.read())
        if match:
            mode_id = int(match.group(1))
            return {"name": conf["modes"].get(mode_id), "id": mode_id, "source": status_path}
    except (IOError, OSError):
        pass
    if conf["default"] is None:
        return None
    return {"name": conf["modes"].get(conf["default"]), "id": conf["default"],
            "source": conf_path + " (default mode; the current one is unknown)"}



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



def nvml_gpu_name(index=0):
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        finally:
            pynvml.nvmlShutdown()
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # no nvidia-ml-py, no driver, no GPU
        return None


def cuda_mem_get_info_mb():
    """(used, total) MB from pycuda's mem_get_info, or None. Call only on the CUDA thread."""
    try:
        import pycuda.driver as cuda
        free, total = cuda.mem_get_info()
    except Exception:  # no pycuda, or no context on this thread
        return None
    return round((total - free) / 2.0 ** 20, 1), round(total / 2.0 ** 20, 1)
