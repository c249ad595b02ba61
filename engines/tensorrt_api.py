"""One place for the TensorRT calls whose spelling changed between 8.2, 8.4+, 10 and 11 (docs/device-runtime.md):
building (flags, workspace, profiles, timing cache, TF32) and running (the two I/O shapes below).

Every choice is a feature test on the module or object at hand, never a version-string comparison, so a
point release that adds or drops a call lands on the right path by itself.

Running an engine, the two ways the Python API names its inputs and outputs:

- ``BindingsIO``       TensorRT 8.2 (JetPack 4.6.1, TX1): binding indices, ``set_binding_shape``,
                       ``execute_async_v2(bindings=[pointers], stream_handle=...)``.
- ``TensorAddressIO``  TensorRT 8.5+, 10, 11: tensor names, ``set_input_shape``, ``set_tensor_address`` once,
                       ``execute_async_v3(stream_handle)``.

:func:`io_for` picks one by feature tests on the objects themselves.
"""
from contract.precisions import PRECISIONS  # noqa: F401  (re-exported: what the builder accepts)
from engines.errors import EngineError


def import_tensorrt():
    """``import tensorrt`` or an EngineError that says how to get it on a Jetson and on a desktop."""
    try:
        import tensorrt
    except ImportError as error:
        raise EngineError("TensorRT's Python bindings are not importable ({}): on a Jetson they come with JetPack "
                          "(python3-libnvinfer; in a venv use --system-site-packages), on a desktop "
                          "pip install tensorrt; or use --backend onnxruntime".format(error))
    return tensorrt


def shared_logger(trt):
    """The one ``trt.Logger`` (WARNING) of the process: the builder, the parser and the runtime share it, as
    TensorRT asks (8.2 warns "the logger passed into createInferRuntime differs from one already provided").
    Kept on the module object itself, so each ``tensorrt`` module (a test's stand-in too) has its own."""
    logger = getattr(trt, "_squishednets_logger", None)
    if logger is None:
        logger = trt.Logger(trt.Logger.WARNING)
        trt._squishednets_logger = logger
    return logger


def version_of(trt):
    return str(getattr(trt, "__version__", "unknown"))


def has_precision_flags(trt):
    """False on TensorRT 11+, where BuilderFlag.FP16/INT8 are gone and precision comes from the ONNX."""
    flags = getattr(trt, "BuilderFlag", None)
    return flags is not None and hasattr(flags, "FP16") and hasattr(flags, "INT8")


def has_builder_flag(trt, name):
    """Whether ``trt.BuilderFlag.<name>`` exists in this TensorRT (TF32: 7.1 and later)."""
    return hasattr(getattr(trt, "BuilderFlag", None), name)


def network_creation_flags(trt, strongly_typed=False):
    """``create_network`` flags: EXPLICIT_BATCH where it still exists (8.x; ignored by 10; gone in 11),
    STRONGLY_TYPED when asked and known (10+: the ONNX's own types decide each layer's precision)."""
    names = getattr(trt, "NetworkDefinitionCreationFlag", None)
    flags = 0
    if names is not None and hasattr(names, "EXPLICIT_BATCH"):
        flags |= 1 << int(names.EXPLICIT_BATCH)
    if strongly_typed:
        if names is None or not hasattr(names, "STRONGLY_TYPED"):
            raise EngineError("this TensorRT ({}) has no strongly typed networks; an FP16 ONNX needs "
                              "TensorRT 10 or later, or use the FP32 ONNX with --precision fp16".format(
                                  version_of(trt)))
        flags |= 1 << int(names.STRONGLY_TYPED)
    return flags


def set_workspace(trt, config, nbytes):
    """Limit the builder's scratch memory: ``set_memory_pool_limit`` (8.4+) or ``max_workspace_size`` (8.2)."""
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))
        return "set_memory_pool_limit"
    config.max_workspace_size = int(nbytes)
    return "max_workspace_size"


def platform_flag(builder, name):
    """``builder.platform_has_fast_fp16/int8``, or None where the property is gone (TensorRT 11)."""
    return getattr(builder, name, None)


def parser_errors(parser):
    """Every error the ONNX parser recorded, in full (node, code, description), one string each."""
    messages = []
    for index in range(int(getattr(parser, "num_errors", 0))):
        error = parser.get_error(index)
        parts = [str(error)]
        for attribute in ("node", "code", "desc", "file", "line", "func", "node_name", "node_operator"):
            method = getattr(error, attribute, None)
            if callable(method):
                try:
                    parts.append("{}={}".format(attribute, method()))
                except Exception as detail:  # a binding that throws for a missing field must not hide the error
                    parts.append("{}=<{}>".format(attribute, detail))
        messages.append("; ".join(parts))
    return messages


def profile_shapes(engine, name, index):
    """(min, opt, max) shapes of input ``name`` in optimisation profile ``index`` (10: by name; 8.2: by binding)."""
    if hasattr(engine, "get_tensor_profile_shape"):
        return tuple(tuple(shape) for shape in engine.get_tensor_profile_shape(name, index))
    binding = engine.get_binding_index(name)
    return tuple(tuple(shape) for shape in engine.get_profile_shape(index, binding))


# -- running an engine -----------------------------------------------------------------------------
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
        version_of(trt)))


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
        return tuple(profile_shapes(self.engine, name, 0)[2])

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
