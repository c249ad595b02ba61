"""One place for the TensorRT calls whose spelling changed between 8.2, 8.4+, 10 and 11 (REFERENCE.md's table).

Every choice is a feature test on the module or object at hand, never a version-string comparison, so a
point release that adds or drops a call lands on the right path by itself.
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


def version_of(trt):
    return str(getattr(trt, "__version__", "unknown"))


def has_precision_flags(trt):
    """False on TensorRT 11+, where BuilderFlag.FP16/INT8 are gone and precision comes from the ONNX."""
    flags = getattr(trt, "BuilderFlag", None)
    return flags is not None and hasattr(flags, "FP16") and hasattr(flags, "INT8")


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
