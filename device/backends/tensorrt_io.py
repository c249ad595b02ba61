"""The two ways TensorRT's Python API names an engine's inputs and outputs and runs it.

- ``BindingsIO``       TensorRT 8.2 (JetPack 4.6, TX1): binding indices, ``set_binding_shape``,
                       ``execute_async_v2(bindings=[pointers], stream_handle=...)``.
- ``TensorAddressIO``  TensorRT 8.5+, 10, 11: tensor names, ``set_input_shape``, ``set_tensor_address`` once,
                       ``execute_async_v3(stream_handle)``.

:func:`io_for` picks one by feature tests on the objects themselves.
"""
from engines import tensorrt_api as api
from engines.errors import EngineError


class IOTensor(object):
    def __init__(self, name, is_input, dtype, shape):
        self.name = name
        self.is_input = is_input
        self.dtype = dtype  # numpy dtype, from trt.nptype
        self.shape = tuple(shape)  # engine shape, -1 where dynamic

    def __repr__(self):
        return "IOTensor({!r}, {}, {}, {})".format(self.name, "input" if self.is_input else "output",
                                                   self.dtype, self.shape)


def io_for(trt, engine, context):
    """``TensorAddressIO`` when the context has ``execute_async_v3`` and the engine ``num_io_tensors``,
    else ``BindingsIO``."""
    if hasattr(context, "execute_async_v3") and hasattr(engine, "num_io_tensors"):
        return TensorAddressIO(trt, engine, context)
    if hasattr(context, "execute_async_v2") and hasattr(engine, "num_bindings"):
        return BindingsIO(trt, engine, context)
    raise EngineError("this TensorRT ({}) has neither execute_async_v3 nor execute_async_v2".format(
        api.version_of(trt)))


class BindingsIO(object):
    """TensorRT 8.2 ... 8.4: everything by binding index."""

    path = "execute_async_v2 (bindings, TensorRT 8.2)"

    def __init__(self, trt, engine, context):
        self.engine, self.context = engine, context
        self.tensors = []
        self._index = {}
        for index in range(engine.num_bindings):
            name = engine.get_binding_name(index)
            self._index[name] = index
            self.tensors.append(IOTensor(name, bool(engine.binding_is_input(index)),
                                         trt.nptype(engine.get_binding_dtype(index)), engine.get_binding_shape(index)))
        self._bindings = None

    def max_shape(self, name):
        return tuple(self.engine.get_profile_shape(0, self._index[name])[2])

    def set_input_shape(self, name, shape):
        if not self.context.set_binding_shape(self._index[name], tuple(shape)):
            raise EngineError("TensorRT refused input shape {} for {}: outside the engine's batch profile".format(
                tuple(shape), name))

    def output_shape(self, name):
        return tuple(self.context.get_binding_shape(self._index[name]))

    def bind(self, addresses):
        """``addresses``: {tensor name: device pointer int}; fixed for the engine's life."""
        self._bindings = [int(addresses[tensor.name]) for tensor in self.tensors]

    def execute(self, stream_handle):
        if not self.context.execute_async_v2(bindings=self._bindings, stream_handle=stream_handle):
            raise EngineError("TensorRT execute_async_v2 failed (see its log)")


class TensorAddressIO(object):
    """TensorRT 8.5+ / 10 / 11: everything by tensor name."""

    path = "execute_async_v3 (tensor addresses, TensorRT 8.5+/10)"

    def __init__(self, trt, engine, context):
        self.engine, self.context = engine, context
        self.tensors = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self.tensors.append(IOTensor(name, is_input, trt.nptype(engine.get_tensor_dtype(name)),
                                         engine.get_tensor_shape(name)))

    def max_shape(self, name):
        return tuple(api.profile_shapes(self.engine, name, 0)[2])

    def set_input_shape(self, name, shape):
        if not self.context.set_input_shape(name, tuple(shape)):
            raise EngineError("TensorRT refused input shape {} for {}: outside the engine's batch profile".format(
                tuple(shape), name))

    def output_shape(self, name):
        return tuple(self.context.get_tensor_shape(name))

    def bind(self, addresses):
        for tensor in self.tensors:
            self.context.set_tensor_address(tensor.name, int(addresses[tensor.name]))

    def execute(self, stream_handle):
        if not self.context.execute_async_v3(stream_handle):
            raise EngineError("TensorRT execute_async_v3 failed (see its log)")
