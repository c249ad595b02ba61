"""TensorRT with pycuda: a cached engine, page-locked host buffers and device buffers sized for the largest
batch, one stream, and every CUDA call on one thread holding the primary context (device.backends.cuda_thread).
"""
import json
import os

import numpy as np

from contract.errors import DeviceError
from contract.files import atomic_write
from device.backends.base import Backend
from device.backends.cuda_thread import CudaThread
from device.machine import mem_available_mb
from engines import tensorrt_api as api
from engines.build import BuildSettings, DEFAULT_WORKSPACE_MB, load_engine
from engines.errors import EngineError
from engines.gpu import gpu_info_from_pycuda


class TensorRTBackend(Backend):
    name = "tensorrt"
    _events = None  # (start, end) CUDA events timing the GPU preprocessing of a frame

    def __init__(self, info, precision="fp32", max_batch=8, why="", cache_dir=None, log=print,
                 workspace_mb=DEFAULT_WORKSPACE_MB, opt_batch=None, calibration_dir=None, device_index=0,
                 tactic_sources=None):
        Backend.__init__(self, info, precision, max_batch, why)
        if info.input_shape[0] is not None:  # a fixed-batch ONNX: the profile is that batch
            self.max_batch = opt_batch = info.input_shape[0]
        self.settings = BuildSettings(precision, 1 if info.input_shape[0] is None else self.max_batch,
                                      opt_batch, self.max_batch, workspace_mb, tactic_sources)
        if getattr(info, "quantized", False):  # Q/DQ: built INT8 from its own scales (engines/build.py)
            self.precision = "int8-qdq"
        self._log = log
        self._cache_dir = cache_dir
        self._calibration_dir = calibration_dir
        self._device_index = device_index
        api.import_tensorrt()  # both before any thread starts, each with a message that says how to get it
        import_pycuda()
        self._thread = CudaThread(device_index=device_index, name="tensorrt-cuda")
        try:
            open_on_thread(self._thread, self._open, self)
        except BaseException:
            self._thread = None
            raise

    # -- on the CUDA thread ----------------------------------------------------------------------
    def _open(self):
        trt = api.import_tensorrt()
        import pycuda.driver as cuda
        self._trt, self._cuda = trt, cuda
        self.gpu = gpu_info_from_pycuda(cuda, self._device_index)
        if self.settings.precision == "int8" and api.has_precision_flags(trt):
            from calibration.policy import require_int8
            # the one INT8 policy check (TX1: refused before any calibration or build work, suggesting FP16)
            self._log("engine: " + require_int8(self.gpu))
        self._logger = api.shared_logger(trt)  # the builder's too (engines/build.py): one logger a process
        self._runtime = trt.Runtime(self._logger)
        # engines/ hands over a ready engine (cache, build, the rebuild of a refused one); here: context, buffers
        self.engine, entry, self.sidecar, self.built = load_engine(
            trt, self._runtime, self.info, self.settings, self.gpu, self._cache_dir, self._calibrator_factory,
            self._log)
        self.engine_path = entry.engine_path
        if self.info.input_dtype == "float16":
            self.precision = "fp16"  # an FP16 ONNX is built strongly typed: it runs in FP16 whatever was asked
        self.context = self.engine.create_execution_context()
        if self.context is None:  # TensorRT returns None, not an exception, when activation memory runs out
            raise EngineError(
                "TensorRT could not create an execution context for {} (out of GPU memory: {:.0f} MB free of "
                "{:.0f} MB). Close other GPU programs (a desktop session takes hundreds of MB on a 4 GB TX1) or "
                "lower the largest batch (device-bench --batch)".format(entry.engine_path, *[
                    value / 2.0 ** 20 for value in cuda.mem_get_info()]))
        self.io = api.io_for(trt, self.engine, self.context)
        self.stream = cuda.Stream()
        self._host, self._device, addresses = {}, {}, {}
        for tensor in self.io.tensors:
            shape = self.io.max_shape(tensor.name) if tensor.is_input else None
            if shape is None:  # outputs: their shape at the largest input batch
                for inp in self.io.tensors:
                    if inp.is_input:
                        self.io.set_input_shape(inp.name, self.io.max_shape(inp.name))
                shape = self.io.output_shape(tensor.name)
            count = int(np.prod(shape))
            self._host[tensor.name] = cuda.pagelocked_empty(count, tensor.dtype)
            self._device[tensor.name] = cuda.mem_alloc(self._host[tensor.name].nbytes)
            addresses[tensor.name] = int(self._device[tensor.name])
        self.io.bind(addresses)
        self._in = [t for t in self.io.tensors if t.is_input][0]
        self._out = [t for t in self.io.tensors if t.name == self.output_name] or \
            [t for t in self.io.tensors if not t.is_input]
        self._out = self._out[0]

    def _calibrator_factory(self):
        from calibration.cache import calibration_paths, calibration_signature
        from calibration.calibrator import entropy_calibrator
        from calibration.dataset import CalibrationSet
        cache_path = calibration_paths(self._cache_dir, self.info, api.version_of(self._trt))[0]
        dataset = None
        if self._calibration_dir:
            dataset = CalibrationSet(self._calibration_dir, self.info.spec, batch_size=self.settings.opt_batch)
        signature = calibration_signature(self._cache_dir, self.info, api.version_of(self._trt), dataset)
        return entropy_calibrator(self._trt, self._cuda, dataset, cache_path, self._log), signature

    def _stage_input(self, batch):
        count = batch.size
        host = self._host[self._in.name][:count]
        np.copyto(host, batch.reshape(-1), casting="same_kind")  # float32 -> the engine's input type
        self._cuda.memcpy_htod_async(self._device[self._in.name], host, self.stream)
        self.io.set_input_shape(self._in.name, batch.shape)

    def _infer_here(self, batch):
        self._stage_input(batch)
        return self._execute_and_fetch()

    def _infer_frame_here(self, frame_bgr):
        """The CUDA-backed path: the uint8 frame is uploaded once and resized, colour-converted and normalised
        by the kernel straight into the engine's input buffer (contract.preprocess's arithmetic)."""
        spec = self.info.spec
        if self._events is None:
            self._events = (self._cuda.Event(), self._cuda.Event())
        start, end = self._events
        start.record(self.stream)
        self._preprocessor.to_device(frame_bgr, int(self._device[self._in.name]), self.stream)
        end.record(self.stream)
        self.io.set_input_shape(self._in.name, (1, 3, spec.height, spec.width))
        logits = self._execute_and_fetch()  # synchronizes the stream: both events have happened
        self.last_preprocess_ms = end.time_since(start)  # upload + kernel, milliseconds
        return logits

    def _execute_and_fetch(self):
        self.io.execute(self.stream.handle)
        shape = self.io.output_shape(self._out.name)
        count = int(np.prod(shape))
        host = self._host[self._out.name][:count]
        self._cuda.memcpy_dtoh_async(host, self._device[self._out.name], self.stream)
        self.stream.synchronize()
        return host.reshape(shape).astype(np.float32)  # a copy: the page-locked buffer is reused

    def _network_only_here(self, batch):
        self._stage_input(batch)
        self.stream.synchronize()

        def run():  # holds the backend, not its engine or context: close() releases those for good
            if self.io is None:
                raise EngineError("the TensorRT backend is closed")
            self.io.execute(self.stream.handle)
            self.stream.synchronize()
        return run

    # -- the interface ---------------------------------------------------------------------------
    def _infer(self, batch):
        return self._thread.call(self._infer_here, batch)

    def enable_gpu_preprocess(self):
        """Preprocess frames on the GPU from now on (:meth:`infer_frame`); (True, how) or (False, why not),
        in which case frames keep going through the CPU path. Call it once, before the loop starts."""
        if np.dtype(self._in.dtype) != np.float32:
            return False, "the engine's input is {} and the kernel writes float32".format(np.dtype(self._in.dtype))
        if getattr(self, "fixed_batch", None) not in (None, 1):
            return False, "the model's batch is fixed at {} and the kernel writes one frame".format(self.fixed_batch)
        try:
            from device.cuda_preprocess import CudaPreprocessor, kernel_self_check
            preprocessor = self._thread.call(CudaPreprocessor, self.info.spec)
        except Exception as error:  # a kernel that will not compile or a spec it cannot do: the CPU path works
            return False, "the CUDA preprocessing kernel is unavailable ({})".format(error)
        # compiled is not working: launch it once and compare with the CPU path before any frame depends on it
        ok, how = self._thread.call(kernel_self_check, preprocessor, self.info.spec)
        if not ok:
            self._thread.call(release_cuda_objects, _Holder(_preprocessor=preprocessor))
            return False, "the CUDA preprocessing kernel is not used: " + how
        self._preprocessor = preprocessor
        self.preprocess_path = "gpu"
        return True, "frames are uploaded once and preprocessed by a CUDA kernel into the engine's input buffer " \
                     "({})".format(how)

    def infer_frame(self, frame_bgr):
        if self.preprocess_path != "gpu":
            return Backend.infer_frame(self, frame_bgr)
        try:
            return self._thread.call(self._infer_frame_here, frame_bgr)
        except DeviceError:
            raise
        except Exception as error:  # pycuda's and TensorRT's own types: one line naming the model, as infer does
            raise self._run_error(error, getattr(frame_bgr, "shape", "?"))

    def network_only(self, batch):
        return self._thread.call(self._network_only_here, self.check_batch(batch))

    def run_in_context(self, function):
        return self._thread.call(function)

    def _check_path(self):
        path = getattr(self, "engine_path", None)
        return path + ".check.json" if path else None

    def remembered_reference_check(self):
        """The agreement stored beside the cached engine when it was built (once per built engine); None for an
        engine built now, or when there is none or it is unreadable."""
        path = self._check_path()
        if path is None or getattr(self, "built", True) or not os.path.isfile(path):
            return None
        try:
            with open(path, "r", encoding="utf-8") as handle:
                result = json.load(handle)
        except (IOError, OSError, ValueError):
            return None
        return result if isinstance(result, dict) and "ok" in result else None

    def remember_reference_check(self, result):
        path = self._check_path()
        if path is None or not isinstance(result, dict) or "ok" not in result:
            return
        try:
            atomic_write(path, json.dumps(result, sort_keys=True))
        except (IOError, OSError) as error:  # the check is redone next time; nothing else is lost
            self._log("engine: warning: the check result was not kept beside the engine ({})".format(error))

    def device_memory_mb(self):
        from device.machine import cuda_mem_get_info_mb
        return self._thread.call(cuda_mem_get_info_mb)  # pycuda's mem_get_info, where the context lives

    def describe(self):
        described = Backend.describe(self)
        described["versions"]["tensorrt"] = api.version_of(self._trt)
        try:
            import pycuda
            described["versions"]["pycuda"] = getattr(pycuda, "VERSION_TEXT", "?")
            described["versions"]["cuda_driver"] = self._thread.call(self._cuda.get_driver_version)
        except (ImportError, AttributeError):
            pass
        described["gpu"] = self.gpu.to_dict()
        described["device"] = self.gpu.name
        described["io_path"] = self.io.path
        described["engine"] = {"path": self.engine_path, "built_now": self.built,
                               "batch_profile": list(self.settings.batch_profile),
                               "workspace_mb": self.settings.workspace_mb,
                               "build_seconds": self.sidecar.get("build_seconds")}
        free, total = self._thread.call(self._cuda.mem_get_info)
        described["gpu"]["free_memory_mb"] = round(free / 2.0 ** 20, 1)
        described["gpu"]["mem_available_mb"] = mem_available_mb()  # Jetson: the GPU shares this RAM
        return described

    def close(self):
        thread = getattr(self, "_thread", None)
        if thread is None:
            return
        try:
            thread.call(release_cuda_objects, self)  # on the CUDA thread, while the context is still current
        finally:
            thread.close()  # only now is the primary context popped and released
            self._thread = None


# Reverse order of creation: what uses an object goes before it. The preprocessing kernel's buffers, device
# buffers and the I/O binding first
# (they point into the engine's tensors), then the execution context, the engine, the runtime that
# deserialized it, and the stream. Each is dropped on the CUDA thread; TensorRT's and pycuda's destructors
# then run there, before the context is popped. Dropped off-thread or after the pop, they crash at exit.
RELEASE_ORDER = ("_events", "_preprocessor", "_device", "_host", "io", "context", "engine", "_runtime", "stream")


class _Holder(object):
    """Attributes to release with :func:`release_cuda_objects` (what a failed step made)."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


def open_on_thread(thread, opener, holder):
    """Run ``opener()`` on the CUDA ``thread``; on failure leave nothing behind.

    An error: what ``opener`` made before it failed (buffers, a context, the engine) is released on the CUDA
    thread (:func:`release_cuda_objects` on ``holder``), before the thread pops the context; then the thread
    ends. A signal's exception (KeyboardInterrupt, device-serve's Terminated) while the engine builds: the
    thread is told to end but not waited for -- the process ends now, not when the build does."""
    try:
        thread.call(opener)
    except Exception:
        try:
            thread.call(release_cuda_objects, holder)
        finally:
            thread.close()
        raise
    except BaseException:
        from device.interruptible import note_abandoned
        thread.close(wait=False)
        note_abandoned(thread)  # the command ends without waiting for it (device.interruptible.exit_status)
        raise


def release_cuda_objects(holder):
    """Free ``holder``'s CUDA objects in RELEASE_ORDER: device allocations explicitly (``free()``), the rest by
    dropping the last reference (CPython frees at once). Returns the names released, in order."""
    released = []
    for name in RELEASE_ORDER:
        value = getattr(holder, name, None)
        if value is None:
            continue
        if name == "_device":
            for key in list(value):
                allocation = value.pop(key)
                if hasattr(allocation, "free"):
                    allocation.free()
                del allocation  # the last reference: pycuda frees it here, on this thread
        if isinstance(value, dict):
            value.clear()  # the buffers go now, not when a loop variable lets go of the last one
        else:
            setattr(holder, name, None)
        del value
        released.append(name)
    return released


def import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise EngineError("pycuda is not importable ({}): on JetPack 4.6.1 pip install 'pycuda<=2022.1' (needs nvcc "
                          "on PATH), elsewhere pip install pycuda; or use --backend onnxruntime".format(error))
    return cuda


def tensorrt_ready(device_index=0):
    """(True, description) when tensorrt and pycuda import and a CUDA GPU is there; else (False, why not)."""
    try:
        import tensorrt
    except ImportError as error:
        return False, "TensorRT's Python bindings are not importable ({})".format(error)
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        return False, "TensorRT {} is here but pycuda is not ({}; pip install 'pycuda<=2022.1' on JetPack " \
                      "4.6)".format(api.version_of(tensorrt), error)
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as error:  # pycuda raises its own LogicError/RuntimeError when no driver or GPU
        return False, "no usable CUDA GPU ({})".format(error)
    if count <= device_index:
        return False, "no CUDA GPU {} (found {})".format(device_index, count)
    return True, "TensorRT {} and {} found".format(api.version_of(tensorrt), cuda.Device(device_index).name())

