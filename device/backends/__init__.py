"""Backends: one interface (device.backends.base.Backend) over ONNX Runtime and TensorRT.

``open_backend(model, engine=EngineOptions(...), max_batch=8, log=print)`` opens the backend asked for on an
opened model (a ModelInfo from device.model_source.open_model; a path or host-serve URL is opened there first). ``auto`` takes
TensorRT when TensorRT, pycuda and a GPU are all there, else ONNX Runtime, and says why in ``backend.why``.
"""
from device.backends.base import PRECISIONS, Backend
from device.engine_options import BACKENDS, EngineOptions
from contract.errors import DeviceError
from contract.precisions import check_precision


def choose_backend(requested, precision, tensorrt_check=None):
    """(backend name, precision, why) for ``requested``; ``tensorrt_check() -> (ok, reason)``."""
    if requested not in BACKENDS:
        raise DeviceError("backend {!r} is not one of {}".format(requested, ", ".join(BACKENDS)))
    check_precision(precision)
    if requested != "auto":
        return requested, precision, "asked for {}".format(requested)
    if tensorrt_check is None:
        from device.backends.tensorrt_backend import tensorrt_ready as tensorrt_check
    ok, reason = tensorrt_check()
    if ok:
        return "tensorrt", precision, "auto: {}".format(reason)
    why = "auto: {}, so ONNX Runtime".format(reason)
    if precision != "fp32":
        why += "; {} needs TensorRT, running fp32".format(precision)
        precision = "fp32"
    return "onnxruntime", precision, why


#: Where a Jetson container gets TensorRT, CUDA and cuDNN from: ``--runtime nvidia`` mounts the host's files
#: listed in these CSV files (JetPack 4.x's nvidia-container-runtime); without the flag none of them is there.
JETSON_MOUNT_LISTS = "/etc/nvidia-container-runtime/host-files-for-container.d/*.csv"


def no_backend_message(tensorrt_reason, onnxruntime_reason, jetson=None):
    """The one line for ``--backend auto`` when neither backend can run: both reasons, and on a Jetson the
    likely cause (a container started without ``--runtime nvidia``, or the host's mount lists missing)."""
    if jetson is None:
        from device.machine import is_jetson
        jetson = is_jetson()
    text = "no backend can run here: TensorRT: {}; ONNX Runtime: {}".format(tensorrt_reason, onnxruntime_reason)
    if jetson:
        text += ("; this is a Jetson: in a container, start it with --runtime nvidia (it mounts TensorRT, CUDA "
                 "and pycuda's libraries from the host as listed in the host's {}; check they are there, e.g. "
                 "tensorrt.csv, cuda.csv)".format(JETSON_MOUNT_LISTS))
    else:
        text += "; install onnxruntime (pip install onnxruntime), or TensorRT with pycuda on a CUDA GPU"
    return text


def open_backend(model, backend="auto", precision="fp32", max_batch=8, cache_dir=None, log=print,
                 expected_sha256=None, engine=None, **options):
    """Open a backend on ``model``: a ModelInfo (device.model_source.open_model: the file resolved, read and
    checked once), or a path or host-serve URL, opened with open_model here. Returns a Backend.

    ``engine``: an :class:`~device.engine_options.EngineOptions` (what the commands pass, built and checked
    once); without one, ``backend``, ``precision``, ``cache_dir`` and the ``workspace_mb`` / ``calibration_dir``
    options make it. Further ``options``: ``opt_batch``, ``device_index`` for TensorRT; ``providers``,
    ``threads`` for ONNX Runtime. Raises DeviceError with a clear message on bad input.
    """
    from contract.model_info import ModelInfo
    from device.model_source import check_expected_sha256, default_cache_dir, open_model
    if engine is None:
        engine = EngineOptions(backend, precision, options.pop("calibration_dir", None),
                               options.pop("workspace_mb", None), cache_dir)
    options = dict(engine.backend_options(), **options)
    backend, cache_dir = engine.backend, engine.cache_dir
    name, precision, why = choose_backend(engine.backend, engine.precision)
    if int(max_batch) < 1:
        raise DeviceError("max_batch {} must be at least 1".format(max_batch))
    cache_dir = cache_dir or default_cache_dir()
    if isinstance(model, ModelInfo):
        info = check_expected_sha256(model, expected_sha256)
    else:
        info = open_model(model, cache_dir=cache_dir, expected_sha256=expected_sha256)
    if name == "tensorrt":
        engine.require_calibration(info, cache_dir)  # the one INT8 rule (device.engine_options)
        from device.backends.tensorrt_backend import TensorRTBackend
        allowed = ("workspace_mb", "opt_batch", "calibration_dir", "device_index", "tactic_sources")
        _check_options(options, allowed, name)
        opened = TensorRTBackend(info, precision, max_batch, why, cache_dir, log, **options)
    else:
        from device.backends.onnxruntime_backend import OnnxRuntimeBackend
        if backend == "auto":  # the fallback must run, or say why neither does
            try:
                import onnxruntime  # noqa: F401
            except ImportError as error:
                from device.backends.tensorrt_backend import tensorrt_ready
                raise DeviceError(no_backend_message(tensorrt_ready()[1], "not importable ({})".format(error)))
        _check_options(options, ("providers", "threads", "workspace_mb", "opt_batch", "calibration_dir",
                                  "tactic_sources"), name)
        options.pop("opt_batch", None)  # TensorRT-only settings, harmless when auto fell back
        options.pop("calibration_dir", None)
        options.pop("tactic_sources", None)
        opened = OnnxRuntimeBackend(info, precision, max_batch, why, cache_dir, **options)
    if log is not None:
        log("backend: {} {} ({})".format(opened.name, opened.precision, why))
    return opened


def _check_options(options, allowed, name):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DeviceError("backend {} does not take option(s) {}; it takes {}".format(
            name, ", ".join(unknown), ", ".join(allowed)))


__all__ = ["Backend", "BACKENDS", "EngineOptions", "PRECISIONS", "choose_backend", "open_backend"]
