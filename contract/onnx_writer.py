"""Write small ONNX models without the ``onnx`` package: just enough of onnx.proto's wire format.

The latency table (contract/latency_table.py) times single SqueezeNet layers and whole random genomes on the
device's own backend, so the device must make ONNX files itself; a Jetson's TensorRT image has no ``onnx``
package (contract/model_info.py reads ONNX the same way, for the same reason). Field numbers are those of
onnx/onnx.proto (IR version 7, opset 13); tests check every model written here with ``onnx.checker``.

    graph = Graph("layer")
    graph.add_input("x", [1, 16, 28, 28])
    graph.add_initializer("w", weights)            # a float32 numpy array
    graph.add_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    graph.add_output("y", [1, 16, 28, 28])
    data = model_bytes(graph)                      # bytes ONNX Runtime and TensorRT's parser read
"""
import struct

import numpy as np

IR_VERSION = 7  # ONNX 1.7 and later read it; TensorRT 8.2's parser (onnx-tensorrt 8.2) does
OPSET = 13
FLOAT = 1  # TensorProto.DataType FLOAT

_VARINT, _FIXED32, _BYTES = 0, 5, 2
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7


def _varint(value):
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf writes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number, wire):
    return _varint((number << 3) | wire)


def _int_field(number, value):
    return _key(number, _VARINT) + _varint(int(value))


def _bytes_field(number, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _key(number, _BYTES) + _varint(len(data)) + bytes(data)


def _attribute(name, value):
    """AttributeProto: name 1, f 2, i 3, ints 8, type 20."""
    out = _bytes_field(1, name)
    if isinstance(value, float):
        return out + _key(2, _FIXED32) + struct.pack("<f", value) + _int_field(20, _ATTR_FLOAT)
    if isinstance(value, (list, tuple)):
        return out + b"".join(_int_field(8, v) for v in value) + _int_field(20, _ATTR_INTS)
    return out + _int_field(3, value) + _int_field(20, _ATTR_INT)


def _value_info(name, shape):
    """ValueInfoProto (name 1, type 2) of a float32 tensor; a str in ``shape`` is a symbolic dimension."""
    dims = b""
    for dim in shape:
        dims += _bytes_field(1, _bytes_field(2, dim) if isinstance(dim, str) else _int_field(1, dim))
    tensor_type = _int_field(1, FLOAT) + _bytes_field(2, dims)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


class Graph(object):
    """A GraphProto being written: nodes in order, float32 initializers, inputs and outputs."""

    def __init__(self, name):
        self.name = name
        self._nodes, self._initializers, self._inputs, self._outputs = [], [], [], []

    def add_input(self, name, shape):
        self._inputs.append(_value_info(name, shape))

    def add_output(self, name, shape):
        self._outputs.append(_value_info(name, shape))

    def add_initializer(self, name, array):
        """TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian float32)."""
        array = np.ascontiguousarray(array, dtype="<f4")
        tensor = b"".join(_int_field(1, d) for d in array.shape) + _int_field(2, FLOAT)
        tensor += _bytes_field(8, name) + _bytes_field(9, array.tobytes())
        self._initializers.append(tensor)

    def add_node(self, op_type, inputs, outputs, name=None, **attributes):
        """NodeProto: input 1, output 2, name 3, op_type 4, attribute 5 (ints, floats and int lists)."""
        node = b"".join(_bytes_field(1, i) for i in inputs) + b"".join(_bytes_field(2, o) for o in outputs)
        node += _bytes_field(3, name or outputs[0]) + _bytes_field(4, op_type)
        for key in sorted(attributes):
            node += _bytes_field(5, _attribute(key, attributes[key]))
        self._nodes.append(node)

    def to_bytes(self):
        """GraphProto: node 1, name 2, initializer 5, input 11, output 12."""
        return (b"".join(_bytes_field(1, n) for n in self._nodes) + _bytes_field(2, self.name)
                + b"".join(_bytes_field(5, t) for t in self._initializers)
                + b"".join(_bytes_field(11, i) for i in self._inputs)
                + b"".join(_bytes_field(12, o) for o in self._outputs))


def model_bytes(graph, producer="squishednets latency table"):
    """ModelProto (ir_version 1, producer_name 2, graph 7, opset_import 8) holding ``graph``."""
    opset = _bytes_field(1, "") + _int_field(2, OPSET)
    return (_int_field(1, IR_VERSION) + _bytes_field(2, producer) + _bytes_field(7, graph.to_bytes())
            + _bytes_field(8, opset))
