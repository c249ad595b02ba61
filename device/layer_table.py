"""``device-bench --layer-table OUT.json --model M.onnx``: measure the latency table on this device's backend.

Every layer of the model's SqueezeNet genome is timed alone at every (input, output) width on the table's grid
(contract/latency_table.py: multiples of the backend's channel block up to the model's widths), at the model's
input size and batch 1, on the backend and precision device-serve would use (ONNX Runtime here; TensorRT on a
Jetson, one engine per entry in a scratch cache). Then the table checks itself: a line is fitted from the sum of
layer entries to the measured latency of ``fit_genomes`` whole random networks (the model's widths among them),
and ``check_genomes`` other random networks are predicted and measured; both are printed and kept in the JSON.

Cost: about 3,600 entries for SqueezeNet v1.1 at a step of 8, 10-30 ms each on ONNX Runtime (session and 25
runs); each a TensorRT engine build on a Jetson (seconds), so there ``--layer-table-step 32`` (about 400
entries, interpolated between) is the practical grid.
"""
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from contract import latency_table as lt
from contract.errors import DeviceError
from contract.files import atomic_write, finite_json
from contract.generation_files import MODEL_ONNX
from contract.squeezenet_graph import genome_rows, layer_model, network_model, null_model

LAYER_RUNS = 25      # timed runs per table entry (after WARMUP_RUNS), twice; the lesser median is kept
NETWORK_RUNS = 150   # timed runs per whole network
WARMUP_RUNS = 3
FIT_GENOMES = 10
CHECK_GENOMES = 20


class BackendTimer(object):
    """Median batch-1 latency (ms) of an ONNX model (bytes) on the device's backend: each model written to a
    scratch folder and opened as device-serve opens one (device.backends.open_backend with ``engine``, an
    EngineOptions; TensorRT engines are cached in the scratch folder, never in the user's cache)."""

    def __init__(self, engine, threads=None):
        from device.engine_options import EngineOptions
        if engine.precision == "int8":
            raise DeviceError("--layer-table times fp32 or fp16 layers: INT8 needs a calibration per layer model; "
                              "give --precision fp16 (TensorRT) or fp32")
        self.scratch = tempfile.mkdtemp(prefix="squishednets-layer-table-")
        self.engine = EngineOptions(engine.backend, engine.precision, None, engine.workspace_mb, self.scratch)
        self.threads = threads
        self.described = None
        self._count = 0

    def time_ms(self, model, input_shape, runs, repeats=1):
        """The least of ``repeats`` medians of ``runs`` timed runs (after WARMUP_RUNS), in ms: another process
        on a shared CPU only ever slows a run down, so the least median is the model's own time."""
        from device.backends import open_backend
        self._count += 1
        path = os.path.join(self.scratch, "m{}.onnx".format(self._count))
        with open(path, "wb") as handle:
            handle.write(model)
        options = {"threads": self.threads} if self.threads else {}
        backend = open_backend(_layer_info(path, model, input_shape), engine=self.engine, max_batch=1, log=None,
                               **options)
        try:
            if self.described is None:
                self.described = backend.describe()
            images = np.random.RandomState(0).standard_normal(input_shape).astype(np.float32)
            run = backend.network_only(images) or (lambda: backend.infer(images))

            def timed():
                for _ in range(WARMUP_RUNS):
                    run()
                medians = []
                for _ in range(max(1, repeats)):
                    times = []
                    for _ in range(runs):
                        before = time.perf_counter()
                        run()
                        times.append(time.perf_counter() - before)
                    medians.append(float(np.median(times)))
                return min(medians)
            seconds = backend.run_in_context(timed)
        finally:
            backend.close()
            os.remove(path)
        return seconds * 1000.0

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


def _layer_info(path, model, input_shape):
    """The ModelInfo of a model written here: known, so not parsed; a layer's input is a feature map, not the
    image batch ModelInfo.from_onnx accepts, and its output (batch, channels) is all there is."""
    import hashlib
    from contract.model_info import ModelInfo
    from contract.preprocess import PreprocessSpec
    from contract.squeezenet_graph import INPUT_NAME, OUTPUT_NAME
    return ModelInfo(path, hashlib.sha256(model).hexdigest(), INPUT_NAME, tuple(input_shape), "float32", OUTPUT_NAME,
                     (input_shape[0], None), [], PreprocessSpec(8, 8), "default", None, None, {"ai.onnx": 13}, {}, 7)


class Progress(object):
    """One line rewritten in place on a terminal (a line per layer otherwise): the device side has no tqdm."""

    def __init__(self, total, stream=None):
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, what, count=1, layer_done=False):
        self.done += count
        if not (self.tty or layer_done):
            return
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        text = "device-bench: layer table {:5d}/{} entries ({}), {:.0f} s, about {:.0f} s left".format(
            self.done, self.total, what, elapsed, left)
        self.stream.write(("\r" + text + "   ") if self.tty else text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def measure_layers(timer, parent, image_size, step, progress=None, runs=LAYER_RUNS):
    """{layer: {"cin", "cout", "ms"}} for every layer of ``parent`` on ``step``'s grid (ms as timed; the caller
    subtracts the per-call overhead)."""
    rows = {row.name: row for row in genome_rows(parent, image_size)}
    layers = {}
    for name, (cins, couts) in lt.layer_grids(parent, step).items():
        row = rows[name]
        ms = []
        for cin in cins:
            line = []
            for cout in couts:
                line.append(timer.time_ms(layer_model(row, cin, cout), (1, cin, row.side_in, row.side_in), runs,
                                          repeats=2))
                if progress is not None:
                    progress.step(name)
            ms.append(line)
        if progress is not None:
            progress.step(name, 0, layer_done=True)
        layers[name] = {"cin": cins, "cout": couts, "ms": ms}
    return layers


def network_ms(timer, genome, image_size, runs=NETWORK_RUNS, repeats=2):
    """The whole network's batch-1 latency: the least of ``repeats`` medians (another process on a shared CPU
    only ever slows a run down, so the least is the network's own time)."""
    return timer.time_ms(network_model(genome, image_size), (1, 3, image_size, image_size), runs, repeats)


def remeasure_outliers(timer, table, rows, image_size, runs=NETWORK_RUNS, tries=3, pause_s=0.5):
    """Check rows whose prediction is off by more than MAX_ERROR measured again up to ``tries`` times, ``pause_s``
    apart, the least kept (``remeasured``: how often): a disturbed measurement is not the table's error (a
    training process beside it on a 2-core CPU once made a genome 12 % slower for a few seconds; alone it
    measured within 2 % of its prediction)."""
    for row in rows:
        for attempt in range(tries):
            if abs(row["predicted_ms"] - row["measured_ms"]) <= lt.MAX_ERROR * row["measured_ms"]:
                break
            if attempt and pause_s:
                time.sleep(pause_s)
            again = network_ms(timer, row["widths"], image_size, runs)
            row["measured_ms"] = round(min(row["measured_ms"], again), 5)
            row["remeasured"] = attempt + 1
    return rows


def slow_widths(timer, parent, image_size, step, runs=LAYER_RUNS):
    """The measured cost of a width off the block: the model's most expensive expand3x3 timed at an on-block
    output width and at one filter fewer, and at one input filter fewer. Ratios above 1: off-block is slower."""
    rows = [row for row in genome_rows(parent, image_size) if row.name.endswith(".expand3x3")]
    row = max(rows, key=lambda r: r.macs)
    cin, cout = int(row.cin) // step * step or step, int(row.cout) // step * step or step
    shape = (1, cin, row.side_in, row.side_in)
    on = timer.time_ms(layer_model(row, cin, cout), shape, runs * 2)
    out_off = timer.time_ms(layer_model(row, cin, cout - 1), shape, runs * 2) if cout > 1 else on
    in_off = timer.time_ms(layer_model(row, cin - 1, cout), (1, cin - 1, row.side_in, row.side_in),
                           runs * 2) if cin > 1 else on
    return {"layer": row.name, "cin": cin, "cout": cout, "on_block_ms": round(on, 5),
            "cout_minus_1_ms": round(out_off, 5), "cin_minus_1_ms": round(in_off, 5),
            "cout_off_block_ratio": round(out_off / on, 3) if on > 0 else None,
            "cin_off_block_ratio": round(in_off / on, 3) if on > 0 else None}


def build_table(timer, parent, image_size, step, block, block_why, backend_name, precision, runtime_version,
                machine, seed=0, fit_genomes=FIT_GENOMES, check_genomes=CHECK_GENOMES, progress=None,
                layer_runs=LAYER_RUNS, network_runs=NETWORK_RUNS):
    """Measure a whole table with ``timer`` (a BackendTimer, or a stand-in with ``time_ms(model, shape, runs)``).
    ``parent``: the genome dict whose widths bound the grid. Returns the table dict (contract.latency_table)."""
    overhead = timer.time_ms(null_model(step), (1, step, 1, 1), layer_runs * 2)
    layers = measure_layers(timer, parent, image_size, step, progress, layer_runs)
    for layer in layers.values():
        layer["ms"] = [[round(max(0.0, v - overhead), 5) for v in line] for line in layer["ms"]]
    table = {"format": lt.FORMAT, "backend": backend_name, "precision": precision, "runtime_version": runtime_version,
             "machine": machine, "image_size": int(image_size), "batch": 1, "num_classes": int(parent["num_classes"]),
             "parent": parent, "step": int(step), "block": int(block), "block_why": block_why,
             "overhead_ms": round(overhead, 5), "layers": layers,
             "key": lt.cache_key(backend_name, precision, machine, runtime_version, image_size, parent, step)}
    rng = np.random.RandomState(seed)
    fit_set = [lt.widths_of(parent)] + [lt.random_widths(parent, step, rng) for _ in range(fit_genomes - 1)]
    num_classes = parent["num_classes"]
    raw, measured = [], []
    for widths in fit_set:
        raw.append(lt.raw_sum_ms(table, widths))
        measured.append(network_ms(timer, lt.genome_of(num_classes, widths), image_size, network_runs))
        if progress is not None:
            progress.step("fit networks", 0, layer_done=True)
    intercept, scale = lt.fit_line(raw, measured)
    table["fit"] = {"intercept_ms": round(intercept, 5), "scale": round(scale, 5), "genomes": len(fit_set),
                    "raw_sum_ms": [round(r, 5) for r in raw], "measured_ms": [round(m, 5) for m in measured]}
    rows = []
    for _ in range(check_genomes):
        widths = lt.random_widths(parent, step, rng)
        rows.append({"widths": lt.genome_of(num_classes, widths),
                     "predicted_ms": round(lt.predict_ms(table, widths), 5),
                     "measured_ms": round(network_ms(timer, lt.genome_of(num_classes, widths), image_size,
                                                     network_runs), 5)})
    table["check"] = lt.check_summary(remeasure_outliers(timer, table, rows, image_size, network_runs))
    table["slow_widths"] = slow_widths(timer, parent, image_size, step, layer_runs)
    table["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return table


def summary_lines(table):
    """What device-bench prints about a table: the grid, the fit, the self-check and the off-block cost."""
    check, fit, slow = table["check"], table["fit"], table["slow_widths"]
    lines = ["latency table: {} {} at {} px, {} layers, {} entries on a grid of {} (block {}: {})".format(
        table["backend"], table["precision"], table["image_size"], len(table["layers"]),
        sum(len(l["cin"]) * len(l["cout"]) for l in table["layers"].values()), table["step"], table["block"],
        table["block_why"]),
        "  fit on {} whole networks: measured = {:.4f} ms + {:.3f} x sum of layer entries; per-call overhead "
        "{:.4f} ms".format(fit["genomes"], fit["intercept_ms"], fit["scale"], table["overhead_ms"])]
    if check["genomes"]:
        lines.append("  self-check on {} random genomes: predicted within {:.1f} % of measured (median {:.1f} %); "
                     "{}".format(len(check["genomes"]), 100 * check["max_error"], 100 * check["median_error"],
                                 "within the {:.0f} % it must be".format(100 * lt.MAX_ERROR) if check["within"] else
                                 "NOT within {:.0f} %: measure again on a quiet machine (on a Jetson: sudo "
                                 "jetson_clocks)".format(100 * lt.MAX_ERROR)))
    for name in ("cout", "cin"):
        ratio = slow.get(name + "_off_block_ratio")
        if ratio is not None:
            lines.append("  {} at {} {} (one off the block of {}): {:.2f}x the on-block time".format(
                slow["layer"], name, slow[name] - 1, table["block"], ratio))
    return lines


def write_table(path, table):
    import json
    atomic_write(path, json.dumps(finite_json(table), indent=1, sort_keys=True))


def measure_table(model_path, out_path, engine, step=None, seed=0, log=print, threads=None,
                  fit_genomes=FIT_GENOMES, check_genomes=CHECK_GENOMES, layer_runs=LAYER_RUNS,
                  network_runs=NETWORK_RUNS):
    """device-bench --layer-table: the table for the model at ``model_path`` on ``engine`` (EngineOptions),
    written to ``out_path`` (JSON) and returned. DeviceError when the model carries no SqueezeNet genome or its
    input is not a fixed square image."""
    from device.model_source import open_model
    info = open_model(model_path)
    if not info.genome:
        raise DeviceError("model {} has no genome metadata: --layer-table times the layers of a squishednets "
                          "SqueezeNet; give a model host-evolve exported (RUN/gen-XX/{})".format(model_path, MODEL_ONNX))
    shape = info.input_shape
    if len(shape) != 4 or not isinstance(shape[2], int) or shape[2] != shape[3]:
        raise DeviceError("model {} has input shape {}: --layer-table needs a square image input (N, 3, S, S)".format(
            model_path, shape))
    table = table_for(info.genome, int(shape[2]), engine, step, seed, log, threads, fit_genomes, check_genomes,
                      layer_runs, network_runs, what=model_path)
    table["model"] = {"path": model_path, "sha256": info.sha256}
    write_table(out_path, table)
    return table


def table_for(parent, image_size, engine, step=None, seed=0, log=print, threads=None, fit_genomes=FIT_GENOMES,
              check_genomes=CHECK_GENOMES, layer_runs=LAYER_RUNS, network_runs=NETWORK_RUNS, what=None):
    """The table of ``parent``'s widths (a genome dict) at ``image_size`` on ``engine`` (EngineOptions): what
    device-bench --layer-table and device-agent (a host-evolve request) measure. ``step``: the grid (default
    the backend's channel block)."""
    from device.machine import cpu_flags
    timer = BackendTimer(engine, threads)
    try:
        # one probe opens the backend: which one runs, its versions, the machine
        timer.time_ms(null_model(8), (1, 8, 1, 1), 3)
        described = timer.described
        backend_name, precision = described["backend"], described["precision"]
        flags = cpu_flags()
        block, why = lt.channel_block(backend_name, flags, precision)
        step = int(step or block)
        if step < 1:
            raise DeviceError("--layer-table-step {} must be at least 1".format(step))
        versions = described.get("versions", {})
        runtime_version = versions.get("tensorrt") or versions.get("onnxruntime") or "?"
        if backend_name == "tensorrt":
            gpu = described.get("gpu", {})
            machine = {"gpu": gpu.get("name"), "compute_capability": gpu.get("compute_capability")}
        else:
            machine = {"cpu": described["host"]["processor"], "flags": [f for f in flags if f.startswith(("avx", "fma",
                                                                                                     "neon", "asimd"))],
                       "threads": threads or os.cpu_count()}
        total = lt.entries(lt.layer_grids(parent, step))
        if log is not None:
            log("device-bench: measuring {} layer entries{} on {} {} at {} px (grid {}; {})".format(
                total, " of " + what if what else "", backend_name, precision, image_size, step, why))
        progress = Progress(total)
        table = build_table(timer, parent, image_size, step, block, why, backend_name, precision,
                            runtime_version, machine, seed, fit_genomes, check_genomes, progress, layer_runs,
                            network_runs)
        progress.close()
    finally:
        timer.close()
    return table
