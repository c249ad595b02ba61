"""Hardware in the loop: measured speed steers the evolution.

    host-evolve ... --target-fps 2500 --latency-from local          # ONNX Runtime on this machine
    host-evolve ... --target-fps 200 --latency-from device:tx1-lab  # a Jetson running device-agent --follow

The rule that turns a measured fps into the next generation's R is in host/evolve/steering.py; this module
measures: locally with ONNX Runtime, or by waiting for a device's report in the lineage.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

from host.errors import HostError
from host.run.lineage import Lineage

DEVICE_PREFIX = "device:"


def parse_latency_source(text: str) -> tuple[str, str | None]:
    """'local' -> ('local', None); 'device:ID' -> ('device', 'ID')."""
    if text == "local":
        return "local", None
    if text.startswith(DEVICE_PREFIX) and len(text) > len(DEVICE_PREFIX):
        return "device", text[len(DEVICE_PREFIX):]
    raise HostError(f"--latency-from {text!r}: use 'local' (ONNX Runtime here) or 'device:ID' (the id a "
                    "device-agent reports under)")


def local_fps(onnx_path: str | Path, seconds: float = 2.0) -> float:
    """Images/s at batch 1 with ONNX Runtime on this machine, measured as device-bench measures."""
    from device.bench import bench_model
    # remeasure=0: a ratio to the reference measured alternately (speed_ratios) is this side's stability check
    result = bench_model(str(onnx_path), backend="onnxruntime", precision="fp32", batches=(1,), seconds=seconds,
                         warmup_s=0.2, remeasure=0)
    return float(result["results"][0]["throughput_ips"])


# (ONNX path, seconds) -> images/s; local_fps measures, tests give a deterministic stand-in
FpsMeter = Callable[[Path, float], float]


def speed_ratios(reference_path: str | Path, onnx_path: str | Path, seconds: float = 2.0, rounds: int = 3,
                 measure: FpsMeter = local_fps) -> list[float]:
    """The model's speed over the reference's, ``rounds`` times, the two measured alternately (``seconds``
    each): a shared CPU drifts by tens of percent within minutes, and a ratio measured side by side cancels
    that drift where two absolute figures taken minutes apart do not. ``measure`` is the meter."""
    ratios = []
    for _ in range(rounds):
        reference = measure(reference_path, seconds)
        ratios.append(measure(onnx_path, seconds) / reference)
    return ratios


def local_fps_against(reference_path: str | Path, reference_fps: float, onnx_path: str | Path,
                      seconds: float = 2.0, rounds: int = 3, measure: FpsMeter = local_fps) -> float:
    """The model's fps as ``reference_fps`` x the median of its speed ratios to the reference model."""
    return reference_fps * statistics.median(speed_ratios(reference_path, onnx_path, seconds / 2, rounds, measure))


def wait_for_device_fps(lineage: Lineage, device_id: str, sha256: str, timeout_s: float,
                        poll_s: float = 1.0, log: Callable[[str], None] = print) -> float:
    """The batch-1 benchmark fps a device reported for the model with ``sha256`` (device-agent's, the figure
    steering asks for; a live device-serve figure never stands in); waits for it. A figure the device marked
    unstable (it re-measured and still varied) is used, and said so in ``log``."""
    deadline = time.monotonic() + timeout_s
    while True:
        figure = lineage.latest_device_figure(device_id, sha256)
        if figure is not None:
            if figure["stable"] is False:
                log(f"host-evolve: warning: device {device_id}'s figure for {sha256[:12]}... ({figure['fps']:.1f} "
                    f"img/s) is unstable after its re-measurements; steering uses it. On the device: sudo "
                    f"jetson_clocks, and nothing else running while device-agent benchmarks")
            return figure["fps"]
        if time.monotonic() >= deadline:
            raise HostError(f"no fps from device {device_id!r} for model {sha256[:12]}... within {timeout_s:.0f} s. "
                            f"Is host-serve running on this run and `device-agent --follow URL --device-id "
                            f"{device_id}` on the device? (host-evolve --resume continues from here)")
        time.sleep(poll_s)


def steering_fps(config, lineage: Lineage, root: Path, row: dict, measure: FpsMeter = local_fps,
                 say: Callable[[str], None] = print) -> float:
    """The generation ``row``'s fps from ``config.latency_from``, measured once and kept in the lineage
    (``steering_fps``, ``fps_source``): locally the ancestor is the reference (a median of three) and every
    later generation is measured alternately with it (``local_fps_against``); ``device:ID`` waits for that
    device's report of the generation's sha256 (``wait_for_device_fps``)."""
    stored = lineage.generation(row["generation"])
    fps = stored.get("steering_fps") if stored else None
    if fps is not None:
        return fps
    kind, device_id = parse_latency_source(config.latency_from)
    if kind == "local" and row["generation"] == 0:
        fps = sorted(measure(root / row["onnx"], config.latency_seconds) for _ in range(3))[1]
    elif kind == "local":
        ancestor = lineage.generation(0)
        fps = local_fps_against(root / ancestor["onnx"], ancestor["steering_fps"], root / row["onnx"],
                                config.latency_seconds, measure=measure)
    else:
        say(f"  waiting for device {device_id} to report generation {row['generation']} ...")
        fps = wait_for_device_fps(lineage, device_id, row["sha256"], config.latency_timeout)
    lineage.set_steering_fps(row["generation"], fps, config.latency_from)
    return fps
