"""The machine a published figure was measured on, read from the machine itself (never written by hand)."""
from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    """lscpu's "Model name" (or /proc/cpuinfo's "model name"; platform.processor() as a last resort)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip():
                return value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """e.g. "x86_64, 2 cores, AMD EPYC": architecture, the cores this process may use, the CPU model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cores} cores, {cpu_model()}"
