"""SqueezeNet v1.1's convs from its widths, and ONNX graphs of a whole net or of one layer (random weights).

The shapes are the one definition both sides use: host/evolve/genome.py counts parameters and MACs from
:func:`conv_rows`, and the latency table (contract/latency_table.py, device/layer_table.py) times the same layers.
The whole-network graph has the ops and layout of host-evolve's export (Conv+Relu, MaxPool 3/2 in ceil mode,
Concat of the two expands, conv10+Relu, GlobalAveragePool, Flatten); layers are named as the genome names them:
conv1, fire2.squeeze ... fire9.expand3x3, conv10 (Iandola et al. 2016; torchvision's squeezenet1_1).
"""
import math

import numpy as np

from contract.errors import ContractError
from contract.onnx_writer import Graph, model_bytes

FIRE_NAMES = tuple("fire{}".format(i) for i in range(2, 10))
FIRE_PARTS = ("squeeze", "expand1x1", "expand3x3")
#: Max-pools (3x3, stride 2, ceil mode) sit after conv1, after fire3 and after fire5.
POOL_AFTER = ("conv1", "fire3", "fire5")
INPUT_NAME, OUTPUT_NAME = "input_0", "output_0"


class ConvRow(object):
    """One conv: ``name``, ``cin``, ``cout``, ``kernel``, ``stride``, ``pad``, ``side_in`` and ``side_out``
    (square feature maps, pixels). Widths may be real numbers (the synthesis's expected widths)."""
    __slots__ = ("name", "cin", "cout", "kernel", "stride", "pad", "side_in", "side_out")

    def __init__(self, name, cin, cout, kernel, stride, pad, side_in, side_out):
        self.name, self.cin, self.cout, self.kernel = name, cin, cout, kernel
        self.stride, self.pad, self.side_in, self.side_out = stride, pad, side_in, side_out

    @property
    def macs(self):
        return self.cin * self.cout * self.kernel * self.kernel * self.side_out * self.side_out

    @property
    def params(self):
        return self.cin * self.cout * self.kernel * self.kernel + self.cout


def pool_out(side):
    """MaxPool2d(3, stride 2, ceil_mode=True): ceil((n - 3) / 2) + 1."""
    return int(math.ceil((side - 3) / 2.0)) + 1


def conv_rows(num_classes, conv1, fires, image_size):
    """Every conv of SqueezeNet v1.1 with these widths, in network order (a list of :class:`ConvRow`).
    ``fires``: 8 x (squeeze, expand1x1, expand3x3). ContractError when ``image_size`` is below 16 px."""
    side = (image_size - 3) // 2 + 1  # conv1: 3x3, stride 2, no padding
    if side < 3:
        raise ContractError("image size {} is too small for SqueezeNet: use at least 16 px".format(image_size))
    rows = [ConvRow("conv1", 3, conv1, 3, 2, 0, image_size, side)]
    side = pool_out(side)
    channels = conv1
    for name, (squeeze, e1, e3) in zip(FIRE_NAMES, fires):
        rows.append(ConvRow(name + ".squeeze", channels, squeeze, 1, 1, 0, side, side))
        rows.append(ConvRow(name + ".expand1x1", squeeze, e1, 1, 1, 0, side, side))
        rows.append(ConvRow(name + ".expand3x3", squeeze, e3, 3, 1, 1, side, side))
        channels = e1 + e3
        if name in POOL_AFTER:
            side = pool_out(side)
    rows.append(ConvRow("conv10", channels, num_classes, 1, 1, 0, side, side))
    return rows


def genome_rows(genome, image_size):
    """:func:`conv_rows` of a genome dict (``num_classes``, ``conv1``, ``fires``: host/evolve/genome.py's
    to_dict, the ONNX ``genome`` metadata)."""
    try:
        return conv_rows(int(genome["num_classes"]), genome["conv1"], [tuple(f) for f in genome["fires"]], image_size)
    except (KeyError, TypeError, ValueError) as error:
        raise ContractError("genome {!r} is not SqueezeNet widths (num_classes, conv1, 8 fires of 3): {}".format(
            genome, error))


def _conv(graph, rng, name, source, cin, cout, kernel, stride=1, pad=0):
    fan_in = cin * kernel * kernel
    weights = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32) * np.float32(math.sqrt(2.0 / fan_in))
    graph.add_initializer(name + ".weight", weights)
    graph.add_initializer(name + ".bias", np.zeros(cout, dtype=np.float32))
    graph.add_node("Conv", [source, name + ".weight", name + ".bias"], [name + ".conv"], kernel_shape=[kernel, kernel],
                   strides=[stride, stride], pads=[pad, pad, pad, pad])
    graph.add_node("Relu", [name + ".conv"], [name])
    return name


def _maxpool(graph, source, name):
    graph.add_node("MaxPool", [source], [name], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    return name


def _classifier_tail(graph, source, channels, batch):
    graph.add_node("GlobalAveragePool", [source], ["pooled"])
    graph.add_node("Flatten", ["pooled"], [OUTPUT_NAME], axis=1)
    graph.add_output(OUTPUT_NAME, [batch, channels])


def network_model(genome, image_size, seed=0, batch=1):
    """ONNX bytes of a whole SqueezeNet v1.1 with ``genome``'s widths (integers) and seeded random weights
    (He-normal), input (batch, 3, image_size, image_size) float32 named ``input_0``, output (batch, classes)."""
    rows = {row.name: row for row in genome_rows(genome, image_size)}
    rng = np.random.RandomState(seed)
    graph = Graph("squeezenet1_1")
    graph.add_input(INPUT_NAME, [batch, 3, image_size, image_size])
    x = _maxpool(graph, _conv(graph, rng, "conv1", INPUT_NAME, 3, int(rows["conv1"].cout), 3, stride=2), "pool1")
    for fire in FIRE_NAMES:
        squeeze, e1, e3 = (rows[fire + "." + part] for part in FIRE_PARTS)
        s = _conv(graph, rng, squeeze.name, x, int(squeeze.cin), int(squeeze.cout), 1)
        a = _conv(graph, rng, e1.name, s, int(e1.cin), int(e1.cout), 1)
        b = _conv(graph, rng, e3.name, s, int(e3.cin), int(e3.cout), 3, pad=1)
        graph.add_node("Concat", [a, b], [fire], axis=1)
        x = _maxpool(graph, fire, fire + ".pool") if fire in POOL_AFTER else fire
    conv10 = rows["conv10"]
    x = _conv(graph, rng, "conv10", x, int(conv10.cin), int(conv10.cout), 1)
    _classifier_tail(graph, x, int(conv10.cout), batch)
    return model_bytes(graph)


def layer_model(row, cin, cout, seed=0, batch=1):
    """ONNX bytes of one layer of ``row``'s kind (kernel, stride, pad, input side) at widths ``cin`` -> ``cout``:
    Conv + Relu, then GlobalAveragePool + Flatten so that every backend opens it as a classifier (output
    (batch, cout)); the tail's small cost is in the table's intercept, fitted on whole networks."""
    rng = np.random.RandomState(seed)
    graph = Graph(row.name)
    graph.add_input(INPUT_NAME, [batch, int(cin), row.side_in, row.side_in])
    x = _conv(graph, rng, "layer", INPUT_NAME, int(cin), int(cout), row.kernel, row.stride, row.pad)
    _classifier_tail(graph, x, int(cout), batch)
    return model_bytes(graph)


def null_model(channels, seed=0, batch=1):
    """ONNX bytes of the classifier tail alone on a (batch, channels, 1, 1) input: what one call into the
    backend costs without a conv (the table's per-call overhead)."""
    graph = Graph("null")
    graph.add_input(INPUT_NAME, [batch, int(channels), 1, 1])
    _classifier_tail(graph, INPUT_NAME, int(channels), batch)
    return model_bytes(graph)
