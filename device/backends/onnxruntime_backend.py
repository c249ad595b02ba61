"""ONNX Runtime: the CPU provider everywhere, CUDA and TensorRT providers where this onnxruntime has them."""
import os

import numpy as np

from device.backends.base import Backend
from contract.errors import DeviceError

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise DeviceError("ONNX Runtime is not importable ({}): pip install onnxruntime (or onnxruntime-gpu; on a "
                          "Jetson the wheel from NVIDIA's Jetson Zoo), or use --backend tensorrt".format(error))
    return onnxruntime


def _version(text):
    numbers = []
    for part in str(text).split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers + [0] * (3 - len(numbers)))


def tensorrt_ep_options(ort_version, precision, cache_dir=None, workspace_mb=256):
    """The TensorRT execution provider's options this ONNX Runtime knows (a newer key given to an older one is
    an error there), or None: before 1.9 the provider takes no options dict from Python (only ORT_TENSORRT_*
    environment variables). 1.9: workspace, FP16 and the engine cache as string options; 1.11: the timing cache
    (microsoft/onnxruntime#10297); 1.17: the timing cache's folder (#17865), put beside the engines."""
    version = _version(ort_version)
    if version < (1, 9, 0):
        return None
    options = {"trt_max_workspace_size": str(int(workspace_mb) << 20),
               "trt_fp16_enable": "True" if precision == "fp16" else "False"}
    if cache_dir:
        folder = os.path.join(cache_dir, "ort-tensorrt")
        options.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": folder})
        if version >= (1, 11, 0):
            options["trt_timing_cache_enable"] = "True"
        if version >= (1, 17, 0):
            options["trt_timing_cache_path"] = folder
    return options


def provider_plan(available, precision, input_dtype, cache_dir=None, workspace_mb=256, ort_version="1.16.0"):
    """(providers for InferenceSession, effective precision); DeviceError where the precision cannot be had.

    TensorRT EP first (it can do fp16), then CUDA, then CPU: ONNX Runtime places each node on the first
    provider that takes it. fp16 needs the TensorRT EP or an fp16 ONNX; INT8 is TensorRT-backend only.
    """
    if precision == "int8":
        raise DeviceError("INT8 is not offered on the onnxruntime backend: use --backend tensorrt with a "
                          "calibration folder, or --precision fp16 / fp32")
    providers = []
    if TENSORRT in available:
        options = tensorrt_ep_options(ort_version, precision, cache_dir, workspace_mb)
        providers.append((TENSORRT, options) if options is not None else TENSORRT)
    if CUDA in available:
        providers.append(CUDA)
    providers.append(CPU)
    if precision == "fp16" and TENSORRT not in available and input_dtype != "float16":
        raise DeviceError("fp16 on the onnxruntime backend needs its TensorRT execution provider (this "
                          "onnxruntime has {}); use --precision fp32, an FP16 ONNX, or --backend tensorrt".format(
                              ", ".join(available)))
    return providers, precision


def effective_precision(requested, input_dtype, providers):
    """(the precision that really runs, a note or None), from the session's own ``get_providers()``.

    ONNX Runtime falls back silently: a TensorRT provider that fails to load (no libnvinfer, a version
    mismatch) leaves CUDA or CPU in FP32, and an FP16 ONNX runs in FP16 whatever was asked. The label says
    what runs, so a report never calls an FP32 run fp16 or the reverse.
    """
    if input_dtype == "float16":
        if requested == "fp16":
            return "fp16", None
        return "fp16", "the ONNX is FP16: it runs in FP16, not {}".format(requested)
    if requested == "fp16" and TENSORRT not in providers:
        return "fp32", ("ONNX Runtime's TensorRT provider did not load, so this runs in FP32 on {} although "
                        "fp16 was asked".format(", ".join(providers)))
    return requested, None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, info, precision="fp32", max_batch=8, why="", cache_dir=None, providers=None,
                 workspace_mb=256, threads=None):
        Backend.__init__(self, info, precision, max_batch, why)
        ort = import_onnxruntime()
        self._ort = ort
        available = list(ort.get_available_providers())
        if providers is None and os.environ.get("SQUISHEDNETS_ORT_PROVIDERS"):
            providers = os.environ["SQUISHEDNETS_ORT_PROVIDERS"].split(",")
        quantized = getattr(info, "quantized", False)  # Q/DQ nodes: ONNX Runtime runs them as INT8 itself
        asked = "fp32" if quantized and precision == "int8" else precision
        if providers is None:
            providers, self.precision = provider_plan(available, asked, info.input_dtype, cache_dir, workspace_mb,
                                                      ort.__version__)
        elif asked == "int8":
            provider_plan(available, asked, info.input_dtype)  # raises the INT8 message
        options = ort.SessionOptions()
        from device.library_logs import ort_severity
        options.log_severity_level = ort_severity()  # ONNX Runtime's own warnings (an old opset's, ...) kept out
        if hasattr(ort, "set_default_logger_severity"):
            ort.set_default_logger_severity(ort_severity())
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(info.path, sess_options=options, providers=providers)
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types; say which model and why
            raise DeviceError("ONNX Runtime could not load {}: {}".format(info.path, error))
        self.providers = list(self._session.get_providers())
        self.precision, self.precision_note = effective_precision(self.precision, info.input_dtype, self.providers)
        if quantized:  # what runs is the model's own INT8, whatever was asked: the label says so
            self.precision, self.precision_note = "int8-qdq", "the ONNX is explicitly quantized (Q/DQ): its INT8 runs"
        self._input_dtype = np.float16 if info.input_dtype == "float16" else np.float32
        self.on_cpu_only = self.providers == [CPU]

    def _infer(self, batch):
        if self._input_dtype is not np.float32:
            batch = batch.astype(self._input_dtype)
        logits = self._session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(logits, dtype=np.float32)

    def network_only(self, batch):
        if self.on_cpu_only:
            return None  # no host-device copies to leave out
        batch = self.check_batch(batch).astype(self._input_dtype)
        device = "cuda"
        binding = self._session.io_binding()
        value = self._ort.OrtValue.ortvalue_from_numpy(batch, device, 0)  # copied to the GPU once
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, device, 0)
        session = self._session

        def run():
            session.run_with_iobinding(binding)
        run.keep_alive = (value, binding)
        return run

    def describe(self):
        described = Backend.describe(self)
        described["versions"]["onnxruntime"] = self._ort.__version__
        described["providers"] = self.providers
        if self.precision_note:
            described["precision_note"] = self.precision_note
        described["device"] = described["host"]["processor"] if self.on_cpu_only else "GPU via " + self.providers[0]
        return described

    def close(self):
        self._session = None
