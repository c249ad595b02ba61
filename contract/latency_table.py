"""The latency table: what each SqueezeNet layer costs on the target, at every width the evolution may draw.

NetAdapt's idea (Yang et al., ECCV 2018): time each layer alone on the device at each (input, output) width and
predict a network's latency as the sum of its layers' entries, then cut against that prediction instead of
MACs or parameters. Here a layer's entry is the median time of a one-layer model (Conv + Relu, a classifier
tail) minus the backend's per-call overhead (a model with no conv), and the sum is mapped to whole-network
latency by a line fitted on whole random genomes measured on the same backend,

    predicted_ms(genome) = intercept_ms + scale x sum over layers l of entry_l(cin_l, cout_l),

because a network runs its layers without a per-layer call and, on ONNX Runtime's CPU, without a layout
conversion per layer (its NchwcTransformer reorders once at the ends). ``check`` holds predicted against
measured latency of other random genomes (the self-check device-bench --layer-table prints).

Widths on the table's grid are multiples of ``step`` (the backend's channel block, :func:`channel_block`) up to
the parent's width, plus the parent's own width; real-valued widths (the synthesis's expected widths) are
interpolated bilinearly between grid points, and clamped at its ends. The measurement is device/layer_table.py;
this module is the pure part that host-evolve reads (Python 3.6, numpy only).

Table (JSON, :data:`FORMAT`): ``backend``, ``precision``, ``runtime_version``, ``machine``, ``image_size``,
``batch`` (1), ``num_classes``, ``parent`` (genome dict), ``step``, ``block`` (see :func:`channel_block`),
``overhead_ms``, ``layers`` ({name: {"cin": [...], "cout": [...], "ms": [[...]]}}: ms[i][j] at cin[i], cout[j]),
``fit`` ({"intercept_ms", "scale", "genomes"}), ``check`` ({"genomes": [{"widths", "predicted_ms",
"measured_ms", "error"}], "max_error", "median_error"}), ``slow_widths`` (measured off-block slowdowns),
``key`` (:func:`cache_key`), ``measured_at``.
"""
import bisect
import hashlib
import json

import numpy as np

from contract.errors import ContractError
from contract.squeezenet_graph import FIRE_NAMES, FIRE_PARTS, conv_rows, genome_rows

FORMAT = "squishednets-layer-table/1"
#: A prediction within this share of the measured latency passes the self-check (issue 29's target).
MAX_ERROR = 0.10


def channel_block(backend, cpu_flags=(), precision="fp32"):
    """The channel count whose multiples the backend runs fastest, and why.

    ONNX Runtime's CPU provider converts a Conv to its blocked NCHWc kernels only when the channels are
    multiples of MLAS's NCHWc block: 16 with AVX-512F, 8 with AVX2 or AVX (onnxruntime/core/mlas/lib/
    platform.cpp, MlasNchwcGetBlockSize; onnxruntime/core/optimizer/nchwc_transformer.cc); elsewhere (ARM) no
    NCHWc and no block. TensorRT's FP16 and INT8 tensor-core kernels want channels in multiples of 8 and 32
    (NVIDIA's "Deep Learning Performance: channels", TensorRT best practices); FP32 has no such rule, but 8
    costs nothing. ``cpu_flags``: /proc/cpuinfo's flags (device.machine.cpu_flags). Returns (block, why)."""
    flags = set(cpu_flags)
    if backend == "onnxruntime":
        if "avx512f" in flags:
            return 16, "ONNX Runtime's NCHWc block is 16 with AVX-512F"
        if "avx2" in flags or "avx" in flags:
            return 8, "ONNX Runtime's NCHWc block is 8 with AVX2 (no AVX-512F on this CPU)"
        return 8, "no x86 NCHWc kernels on this CPU; widths in 8s still suit its SIMD"
    if precision == "int8":
        return 32, "TensorRT's INT8 tensor-core kernels want channels in multiples of 32"
    return 8, "TensorRT's FP16 tensor-core kernels want channels in multiples of 8"


def grid(width, step):
    """Widths the evolution may draw for a layer of ``width`` filters with widths rounded to ``step``: the
    multiples of ``step`` below it and ``width`` itself (a rounded count is capped at the parent's width)."""
    width, step = int(width), max(1, int(step))
    values = list(range(step, width, step))
    return values + [width]


def sum_grid(widths_a, widths_b):
    """The input widths of a layer that reads a concat of two layers' outputs (a fire's expands): every sum of
    their grids, as a sorted list."""
    return sorted(set(a + b for a in widths_a for b in widths_b))


def layer_grids(parent, step):
    """{layer name: (cin widths, cout widths)} of every conv of ``parent`` (a genome dict) on ``step``'s grid,
    in network order: what device/layer_table.py measures. A squeeze reads the sum of the previous fire's two
    expands, so its input grid is every sum of theirs."""
    grids = {}
    channels, squeezed, expand1x1 = [3], None, None
    for row in genome_rows(parent, 32):  # the widths only; the size does not matter here
        name = row.name
        couts = [int(row.cout)] if name == "conv10" else grid(row.cout, step)  # conv10: the classes, never cut
        if name.endswith(".expand1x1") or name.endswith(".expand3x3"):
            grids[name] = (list(squeezed), couts)
        else:
            grids[name] = (list(channels), couts)
        if name == "conv1":
            channels = couts
        elif name.endswith(".squeeze"):
            squeezed = couts
        elif name.endswith(".expand1x1"):
            expand1x1 = couts
        elif name.endswith(".expand3x3"):
            channels = sum_grid(expand1x1, couts)
    return grids


def entries(grids):
    """How many (layer, cin, cout) points ``grids`` holds: what a table costs to measure."""
    return sum(len(cins) * len(couts) for cins, couts in grids.values())


def _interval(values, x):
    """(i, j, t): x lies between values[i] and values[j] at share t (clamped to the ends)."""
    if x <= values[0]:
        return 0, 0, 0.0
    if x >= values[-1]:
        last = len(values) - 1
        return last, last, 0.0
    j = bisect.bisect_left(values, x)
    i = j - 1
    return i, j, (x - values[i]) / float(values[j] - values[i])


def layer_ms(layer, cin, cout):
    """A table layer's time at (``cin``, ``cout``), real-valued widths interpolated bilinearly."""
    cins, couts, ms = layer["cin"], layer["cout"], layer["ms"]
    i0, i1, ti = _interval(cins, cin)
    j0, j1, tj = _interval(couts, cout)
    top = ms[i0][j0] * (1 - tj) + ms[i0][j1] * tj
    bottom = ms[i1][j0] * (1 - tj) + ms[i1][j1] * tj
    return top * (1 - ti) + bottom * ti


def layers_ms(table, widths):
    """{layer: its table time} for ``widths`` ({layer: width}, genome names; real values allowed)."""
    fires = [tuple(widths["{}.{}".format(name, part)] for part in FIRE_PARTS) for name in FIRE_NAMES]
    rows = conv_rows(int(table["num_classes"]), widths["conv1"], fires, int(table["image_size"]))
    layers = table["layers"]
    return {row.name: layer_ms(layers[row.name], row.cin, row.cout) for row in rows}


def raw_sum_ms(table, widths):
    return float(sum(layers_ms(table, widths).values()))


def predict_ms(table, widths):
    """Predicted batch-1 latency (ms) of the net with ``widths`` ({layer: width}; real values allowed):
    the fitted line over the sum of its layers' entries (module docstring)."""
    fit = table["fit"]
    return float(fit["intercept_ms"] + fit["scale"] * raw_sum_ms(table, widths))


def widths_of(genome):
    """{layer: width} of a genome dict (num_classes, conv1, fires)."""
    widths = {"conv1": genome["conv1"]}
    for name, fire in zip(FIRE_NAMES, genome["fires"]):
        for part, width in zip(FIRE_PARTS, fire):
            widths["{}.{}".format(name, part)] = width
    return widths


def genome_of(num_classes, widths):
    return {"num_classes": int(num_classes), "conv1": int(widths["conv1"]),
            "fires": [[int(widths["{}.{}".format(name, part)]) for part in FIRE_PARTS] for name in FIRE_NAMES]}


def random_widths(parent, step, rng):
    """A random genome on the table's grid: every layer's width drawn uniformly from :func:`grid`."""
    widths = {}
    for name, width in widths_of(parent).items():
        choices = grid(width, step)
        widths[name] = int(choices[rng.randint(len(choices))])
    return widths


def fit_line(raw_sums, measured):
    """(intercept_ms, scale) of the least-squares line measured ~ intercept + scale x raw sum. One genome:
    the line through the origin's ratio. ContractError when nothing was measured."""
    x, y = np.asarray(raw_sums, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if len(x) == 0:
        raise ContractError("no whole-network measurements to fit the latency table with")
    if len(x) == 1 or float(np.ptp(x)) == 0.0:
        return 0.0, float(y.mean() / x.mean()) if x.mean() > 0 else 1.0
    scale, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(scale)


def check_summary(rows):
    """{"genomes": rows, "max_error", "median_error", "within"}: ``rows`` hold predicted_ms and measured_ms;
    each gets ``error`` = |predicted - measured| / measured; ``within`` is whether all are within MAX_ERROR."""
    for row in rows:
        row["error"] = round(abs(row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"], 4)
    errors = [row["error"] for row in rows]
    return {"genomes": rows, "max_error": max(errors) if errors else None,
            "median_error": float(np.median(errors)) if errors else None,
            "within": bool(errors) and max(errors) <= MAX_ERROR, "max_allowed": MAX_ERROR}


def cache_key(backend, precision, machine, runtime_version, image_size, parent, step):
    """What makes two tables interchangeable: the backend and precision, the machine (CPU model and flags,
    or GPU and SM count), the runtime's version, the input size, the parent widths and the grid's step."""
    text = json.dumps([backend, precision, machine, runtime_version, int(image_size), parent, int(step)],
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def covers(table, genome, image_size):
    """None when ``table`` can price ``genome`` at ``image_size``, else why not (one sentence)."""
    if table.get("format") != FORMAT:
        return "it is not a {} file".format(FORMAT)
    if int(table["image_size"]) != int(image_size):
        return "it was measured at {} px and this run trains at {} px".format(table["image_size"], image_size)
    if int(table["num_classes"]) != int(genome["num_classes"]):
        return "it was measured for {} classes and this run has {}".format(table["num_classes"],
                                                                            genome["num_classes"])
    parent = widths_of(table["parent"])
    wider = [name for name, width in widths_of(genome).items() if width > parent[name]]
    if wider:
        return "its parent is narrower than this run's ancestor at {}".format(", ".join(wider[:3]))
    return None


def load_table(path):
    """A table read from ``path``; ContractError naming the file and the fix when it is not one."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            table = json.load(handle)
    except (IOError, OSError) as error:
        raise ContractError("latency table {}: {}; make one with `device-bench --layer-table {} --model "
                            "MODEL.onnx`".format(path, error.strerror or error, path))
    except ValueError as error:
        raise ContractError("latency table {} is not JSON ({}); make it again with device-bench --layer-table".format(
            path, error))
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise ContractError("{} is not a latency table ({}); make one with device-bench --layer-table".format(
            path, FORMAT))
    problem = table_problem(table)
    if problem:
        raise ContractError("latency table {} is damaged ({}); make it again with device-bench --layer-table".format(
            path, problem))
    return table


REQUIRED = ("backend", "precision", "image_size", "num_classes", "parent", "step", "block", "layers", "fit")


def table_problem(table):
    """None when ``table`` has what a prediction reads, else what is missing or malformed (a phrase)."""
    missing = [key for key in REQUIRED if key not in table]
    if missing:
        return "no " + ", ".join(missing)
    try:
        grids = layer_grids(table["parent"], 1)
        fit = table["fit"]
        float(fit["intercept_ms"]), float(fit["scale"])
        int(table["image_size"]), int(table["num_classes"])
    except (ContractError, KeyError, TypeError, ValueError) as error:
        return "its parent, fit or sizes do not parse: {}".format(error)
    for name in grids:
        layer = table["layers"].get(name)
        if not isinstance(layer, dict) or not all(isinstance(layer.get(k), list) for k in ("cin", "cout", "ms")):
            return "layer {} has no cin, cout and ms lists".format(name)
        cins, couts, ms = layer["cin"], layer["cout"], layer["ms"]
        if not cins or not couts or len(ms) != len(cins) or any(
                not isinstance(line, list) or len(line) != len(couts) for line in ms):
            return "layer {}'s ms is not {} x {}".format(name, len(cins), len(couts))
        if sorted(cins) != cins or sorted(couts) != couts:
            return "layer {}'s widths are not in ascending order".format(name)
        try:
            if not all(float(v) >= 0 for line in ms for v in line):
                return "layer {} has a negative time".format(name)
        except (TypeError, ValueError):
            return "layer {} has a time that is not a number".format(name)
    return None
