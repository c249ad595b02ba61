"""``--budget latency``: R applies to the latency a measured table predicts, and each layer is cut where the
time is and the damage is small.

    host-evolve ... --budget latency                                  # table measured here once, then cached
    host-evolve ... --budget latency --latency-table table.json      # device-bench --layer-table's file (a Jetson's)

Where the table comes from (:func:`resolve_table`): a file (device-bench --layer-table on the target), or
``local``: measured on this machine at the start with ONNX Runtime on one thread (a shared CPU's second thread
is noise), cached under a key of the CPU, its flags, ONNX Runtime's version, the input size and the ancestor's
widths (contract.latency_table.cache_key).

The allocation (:func:`allocation_scales`, NetAdapt's and HALP's idea on the heredity model): each layer l has a
latency price p_l (the predicted ms saved by dropping one of its filters, at the parent's widths) and an
accuracy price a_l (its sensitivity: the fidelity proxy of host/evolve/selection.py, KL(parent || net with only
layer l cut by a quarter of its filters, the weakest), per filter removed). Layer l's survival uses
lambda_l = lambda x (v_l / v_bar) ** (-alpha) with v_l = p_l / a_l, v_bar the geometric mean of its group:
layers that buy much time for little damage are cut more. Squeezes are compared only with squeezes, conv1
and the expands with each other, so the narrow squeezes are never stripped first (the failure of
``--cost-exponent``, docs/benchmarks.md section 7); the factors are clipped to [1/4, 4]. Which filters die
within a layer is still the heredity's strength-weighted draw.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from contract import latency_table as lt
from contract.errors import ContractError
from contract.generation_files import MODEL_ONNX
from host.errors import HostError

SQUEEZE_GROUP, WIDE_GROUP = "squeeze", "conv1+expands"
SCALE_LIMIT = 4.0
SENSITIVITY_CUT = 0.25  # the share of a layer's filters the sensitivity probe removes (its weakest)


def group_of(layer: str) -> str:
    return SQUEEZE_GROUP if layer.endswith(".squeeze") else WIDE_GROUP


class LatencyCost:
    """Predicted batch-1 latency in ms from a table (contract.latency_table): of a genome, or of widths that may
    be real numbers (the synthesis's expected widths, interpolated in the table)."""

    def __init__(self, table: dict, source: str):
        self.table = table
        self.source = source

    def of_widths(self, widths: dict) -> float:
        return lt.predict_ms(self.table, widths)

    def of_genome(self, genome) -> float:
        return self.of_widths(genome.layer_widths())

    def prices(self, widths: dict) -> dict:
        """{layer: predicted ms saved by one filter fewer} at ``widths`` (conv10 has none: it is not cut)."""
        total = self.of_widths(widths)
        return {name: max(0.0, total - self.of_widths(dict(widths, **{name: widths[name] - 1.0})))
                for name in widths}

    def describe(self) -> str:
        t, check = self.table, self.table.get("check", {})
        checked = (f", self-check within {100 * check['max_error']:.1f} % on {len(check['genomes'])} random genomes"
                   if check.get("genomes") else "")
        return (f"latency table {self.source}: {t['backend']} {t['precision']} at {t['image_size']} px, grid of "
                f"{t['step']} (block {t['block']}){checked}")


def allocation_scales(prices: dict, sensitivities: dict, exponent: float, limit: float = SCALE_LIMIT) -> dict:
    """{layer: factor of lambda}: (v_l / v_bar_group) ** (-exponent), v_l = prices[l] / sensitivities[l],
    clipped to [1/limit, limit] (module docstring). A layer with no price or no sensitivity measured gets 1.
    ``exponent`` 0: all 1.0 (the heredity alone)."""
    values = {}
    for name, price in prices.items():
        sensitivity = sensitivities.get(name)
        if price > 0 and sensitivity is not None and sensitivity > 0 and math.isfinite(sensitivity):
            values[name] = price / sensitivity
    scales = {name: 1.0 for name in prices}
    if exponent == 0:
        return scales
    for group in (SQUEEZE_GROUP, WIDE_GROUP):
        members = [name for name in values if group_of(name) == group]
        if len(members) < 2:
            continue
        log_mean = float(np.mean([math.log(values[name]) for name in members]))
        for name in members:
            factor = math.exp(-exponent * (math.log(values[name]) - log_mean))
            scales[name] = min(limit, max(1.0 / limit, factor))
    return scales


def probe_cut(strengths: np.ndarray, round_to: int, min_filters: int) -> np.ndarray:
    """The filters a layer keeps in its sensitivity probe: all but its weakest SENSITIVITY_CUT share, the kept
    count on the ``round_to`` grid (else one grid step down); every filter (no probe) where the layer cannot
    shrink at all (a 16-wide layer on a grid of 16 keeps 16: the heredity rounds its count back up). Sorted
    indices."""
    width, step, floor = len(strengths), max(1, int(round_to)), max(1, int(min_filters))
    keep = int(math.floor(width * (1 - SENSITIVITY_CUT) / step) * step)
    if keep < floor:
        keep = width - step
    if keep < floor:
        keep = width
    order = np.argsort(-np.asarray(strengths, dtype=np.float64), kind="stable")
    return np.sort(order[:keep])


def table_key(image_size: int, parent: dict, step: int) -> tuple[str, dict, str]:
    """(cache key, machine, runtime version) of a local ONNX Runtime table."""
    import onnxruntime
    from device.machine import cpu_flags
    from host.machine_info import cpu_model
    flags = [f for f in cpu_flags() if f.startswith(("avx", "fma", "asimd", "neon"))]
    machine = {"cpu": cpu_model(), "flags": flags, "threads": 1}
    version = onnxruntime.__version__
    return lt.cache_key("onnxruntime", "fp32", machine, version, image_size, parent, step), machine, version


def default_cache() -> Path:
    root = os.environ.get("SQUISHEDNETS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "squishednets")
    return Path(root) / "layer-tables"


def local_block() -> tuple[int, str]:
    from device.machine import cpu_flags
    return lt.channel_block("onnxruntime", cpu_flags())


def measure_local(parent: dict, image_size: int, step: int, cache: Path | None = None,
                  log: Callable[[str], None] = print) -> tuple[dict, str]:
    """The local table for ``parent`` at ``image_size`` (ONNX Runtime, one thread), from the cache or measured
    now and cached; (table, where it is)."""
    from device.engine_options import EngineOptions
    from device.layer_table import BackendTimer, Progress, build_table
    cache = cache or default_cache()
    key, machine, version = table_key(image_size, parent, step)
    path = cache / f"{key}.json"
    if path.is_file():
        try:
            return lt.load_table(str(path)), str(path)
        except ContractError:
            log(f"host-evolve: the cached latency table {path} is damaged; measuring it again")
    block, why = local_block()
    total = lt.entries(lt.layer_grids(parent, step))
    log(f"host-evolve: measuring the latency table here (ONNX Runtime, one thread, {total} layer entries at "
        f"{image_size} px, grid {step}; once per machine, cached in {cache})")
    timer = BackendTimer(EngineOptions("onnxruntime"), threads=1)
    try:
        progress = Progress(total)
        table = build_table(timer, parent, image_size, step, block, why, "onnxruntime", "fp32", version, machine,
                            progress=progress)
        progress.close()
    finally:
        timer.close()
    table["key"] = key
    cache.mkdir(parents=True, exist_ok=True)
    from device.layer_table import write_table
    write_table(str(path), table)
    return table, str(path)


def resolve_table(source: str, parent: dict, image_size: int, step: int, log: Callable[[str], None] = print,
                  cache: Path | None = None) -> LatencyCost:
    """The LatencyCost of ``source``: "local" (measure_local) or a table file. HostError naming the file and
    the fix when it cannot price this run (another input size, fewer classes, a narrower parent)."""
    if source == "local":
        table, where = measure_local(parent, image_size, step, cache, log)
        cost = LatencyCost(table, f"measured here ({where})")
    else:
        try:
            table = lt.load_table(source)
        except ContractError as error:
            raise HostError(f"--latency-table {source}: {error}") from error
        cost = LatencyCost(table, source)
    return covers_or_refuse(cost, parent, image_size, log)


def covers_or_refuse(cost: LatencyCost, parent: dict, image_size: int, log: Callable[[str], None]) -> LatencyCost:
    """``cost`` when its table can price this run (else HostError naming it and the fix); a table whose
    self-check missed is used, and said so."""
    table, source = cost.table, cost.source
    why = lt.covers(table, parent, image_size) or lt.table_problem(table)
    if why:
        raise HostError(f"--latency-table {source} cannot price this run: {why}; measure one for it with "
                        f"`device-bench --layer-table OUT.json --model RUN/gen-00/{MODEL_ONNX}` on the target")
    check = table.get("check") or {}
    if check.get("genomes") and not check.get("within"):
        log(f"host-evolve: warning: latency table {source} predicted whole networks only within "
            f"{100 * check['max_error']:.1f} % (its self-check asks {100 * lt.MAX_ERROR:.0f} %); measure it again "
            "on a quiet device")
    return cost


def device_of(source: str) -> str | None:
    """'device:ID' -> 'ID'; None for a file or 'local' (the form --latency-from takes, host/evolve/latency.py)."""
    from host.evolve.latency import DEVICE_PREFIX
    return source[len(DEVICE_PREFIX):] if source.startswith(DEVICE_PREFIX) and len(source) > len(DEVICE_PREFIX) \
        else None


def wait_for_device_table(lineage, request_id: int, device_id: str, timeout_s: float, poll_s: float = 1.0,
                          log: Callable[[str], None] = print) -> dict:
    """The table device ``device_id`` sent for request ``request_id`` (host-serve stores it in the run's
    lineage, host/serve/latency_tables.py); waits up to ``timeout_s`` s. HostError naming what to start."""
    import time
    deadline, said = time.monotonic() + timeout_s, False
    while True:
        table = lineage.latency_table_for(request_id)
        if table is not None:
            return table
        if not said:
            log(f"host-evolve: waiting up to {timeout_s:.0f} s for device {device_id}'s latency table (request "
                f"{request_id}): run `host-serve --run RUN` and on the device `device-agent --follow URL "
                f"--device-id {device_id} --token-file FILE`")
            said = True
        if time.monotonic() >= deadline:
            raise HostError(f"no latency table from device {device_id!r} within {timeout_s:.0f} s (request "
                            f"{request_id}). Is host-serve running on this run and `device-agent --follow URL "
                            f"--device-id {device_id}` on the device? (host-evolve --resume continues from here)")
        time.sleep(poll_s)


def save_copy(cost: LatencyCost, path: Path) -> None:
    """The table the run was steered by, kept in the run folder (RUN/latency-table.json)."""
    from contract.files import atomic_write
    atomic_write(path, json.dumps(cost.table, indent=1, sort_keys=True))
