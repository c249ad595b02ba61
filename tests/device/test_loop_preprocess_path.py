"""Which path frames take into the network: the CPU (contract.preprocess, then infer) or the backend's own
device kernel (infer_frame with the raw frame). The GPU kernel cannot run here; its parity with the CPU path
is scripts/gpu-check.sh's job. What runs here: the loop's wiring of both paths on a real ONNX Runtime backend,
and TensorRT's fall-back to the CPU path when the kernel is unavailable."""

import numpy as np

from device.backends import open_backend
from device.backends.cuda_thread import CudaThread
from device.loop import ServeLoop
from device.serve import choose_preprocess
from device.frame_reader import FrameReader
from device.sources import SyntheticSource
from device.telemetry import Telemetry
from tests.engines.tiny_onnx import tiny_onnx


def run_loop(backend, frames=12):
    source = SyntheticSource(width=96, height=64, frames=frames)
    source.open()
    reader = FrameReader(source).start()
    telemetry = Telemetry(backend.name, backend.precision, backend.info.sha256, platform_monitors=False)
    loop = ServeLoop(backend, backend.info.spec, backend.info.labels, reader, telemetry, log=lambda line: None)
    try:
        loop.run()
    finally:
        reader.close()
    return loop


def test_the_cpu_path_preprocesses_before_infer(tmp_path):
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=1, cache_dir=str(tmp_path), log=None) as backend:
        assert backend.preprocess_path == "cpu"
        assert "on the CPU" in choose_preprocess(backend, log=lambda line: None)
        seen = []
        infer = backend.infer
        backend.infer = lambda tensor: seen.append((tensor.dtype, tensor.shape)) or infer(tensor)
        loop = run_loop(backend)
    assert loop.inferred == 12 and not loop.gpu_preprocess
    assert set(seen) == {(np.dtype(np.float32), (1, 3) + backend.info.input_shape[2:])}


def test_with_device_preprocessing_the_loop_hands_the_raw_frame_to_infer_frame(tmp_path):
    """A backend that preprocesses on its device (TensorRT with the kernel) gets uint8 BGR frames, untouched
    by the CPU path; here ONNX Runtime stands in for it, preprocessing in infer_frame (the base class's)."""
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=1, cache_dir=str(tmp_path), log=None) as backend:
        backend.preprocess_path = "gpu"  # stand-in: what enable_gpu_preprocess sets on TensorRT
        frames = []
        infer_frame = backend.infer_frame
        backend.infer_frame = lambda frame: frames.append((frame.dtype, frame.shape)) or infer_frame(frame)
        loop = run_loop(backend)
    assert loop.inferred == 12 and loop.gpu_preprocess
    assert set(frames) == {(np.dtype(np.uint8), (64, 96, 3))}


def test_tensorrt_falls_back_to_the_cpu_path_when_the_kernel_is_unavailable():
    """No pycuda here: enable_gpu_preprocess says why and leaves the CPU path on."""
    from device.backends.tensorrt_backend import TensorRTBackend
    from contract.model_info import ModelInfo
    from engines.tensorrt_api import IOTensor
    backend = object.__new__(TensorRTBackend)
    backend.info = ModelInfo.from_onnx(tiny_onnx())
    backend._in = IOTensor("input_0", True, np.float32, (-1, 3, 32, 32))
    backend._thread = CudaThread(lambda: None, name="recording-cuda")
    try:
        ok, why = backend.enable_gpu_preprocess()
        assert not ok and "kernel is unavailable" in why  # here: no pycuda; elsewhere: no context to compile in
        assert backend.preprocess_path == "cpu"
        backend._in = IOTensor("input_0", True, np.float16, (-1, 3, 32, 32))
        ok, why = backend.enable_gpu_preprocess()
        assert not ok and "float16" in why  # an FP16 engine input: the kernel writes float32
    finally:
        backend._thread.close()


def test_on_the_gpu_path_the_kernels_time_is_the_preprocess_stage_not_network_time(tmp_path):
    """jetson-inference's Network FPS is the network alone: the frame upload and the kernel, which the backend
    times with CUDA events (last_preprocess_ms), go to the preprocess stage and come out of "infer"."""
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=1, cache_dir=str(tmp_path), log=None) as backend:
        backend.preprocess_path = "gpu"
        infer_frame = backend.infer_frame
        said = []

        def timed(frame):  # says, as TensorRT's events would, that half of its time was upload and kernel
            import time
            begin = time.monotonic()
            result = infer_frame(frame)
            said.append((time.monotonic() - begin) * 1000.0 / 2)
            backend.last_preprocess_ms = said[-1]
            return result
        backend.infer_frame = timed
        loop = run_loop(backend)
    stages = loop.telemetry.snapshot()["stages_ms"]
    assert min(said) - 0.01 <= stages["preprocess"]["p50"] <= max(said) + 0.01  # the kernel's own times


def test_the_loop_asks_the_backend_for_its_device_memory_whatever_its_name(tmp_path):
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=1, cache_dir=str(tmp_path), log=None) as backend:
        assert backend.device_memory_mb() is None  # ONNX Runtime has no CUDA context of its own to ask
        backend.device_memory_mb = lambda: (123.0, 4096.0)  # what TensorRT's pycuda answer looks like
        loop = run_loop(backend)
    memory = loop.telemetry.memory()
    assert (memory["gpu_mem_mb"], memory["gpu_mem_total_mb"]) == (123.0, 4096.0)
