"""TensorRT backend pieces: the 8.2 vs 8.5+/10 I/O path choice and calls (on recording stand-ins that are not
TensorRT), the one-thread CUDA executor (with a recording context), and the real thing under markers."""
import threading

import numpy as np
import pytest

from device.backends.cuda_thread import CudaThread
from engines.tensorrt_api import BindingsIO, TensorAddressIO, io_for
from tests.engines.recording_tensorrt import (RecordingContext10, RecordingContext82, RecordingEngine10,
                                              RecordingEngine82, recording_tensorrt)
from tests.engines.tiny_onnx import SIZE, tiny_model, tiny_onnx


def test_trt82_path_uses_bindings_and_execute_async_v2():
    trt = recording_tensorrt("8.2.1.8")
    context = RecordingContext82(trt.calls)
    io = io_for(trt, RecordingEngine82(), context)
    assert isinstance(io, BindingsIO) and "execute_async_v2" in io.path
    assert [(t.name, t.is_input, t.dtype) for t in io.tensors] == [("input_0", True, np.float32),
                                                                  ("output_0", False, np.float32)]
    assert io.max_shape("input_0") == (8, 3, 32, 32)
    io.bind({"input_0": 1000, "output_0": 2000})
    io.set_input_shape("input_0", (4, 3, 32, 32))
    assert io.output_shape("output_0") == (4, 3)
    io.execute(77)
    assert trt.calls[-2:] == [("set_binding_shape", (0, (4, 3, 32, 32))), ("execute_async_v2", ((1000, 2000), 77))]


def test_trt10_path_uses_tensor_addresses_and_execute_async_v3():
    trt = recording_tensorrt("10.3.0")
    context = RecordingContext10(trt.calls)
    io = io_for(trt, RecordingEngine10(), context)
    assert isinstance(io, TensorAddressIO) and "execute_async_v3" in io.path
    assert io.max_shape("input_0") == (8, 3, 32, 32)
    io.bind({"input_0": 1000, "output_0": 2000})
    io.set_input_shape("input_0", (2, 3, 32, 32))
    assert io.output_shape("output_0") == (2, 3)
    io.execute(77)
    assert trt.calls == [("set_tensor_address", ("input_0", 1000)), ("set_tensor_address", ("output_0", 2000)),
                         ("set_input_shape", ("input_0", (2, 3, 32, 32))), ("execute_async_v3", 77)]


def test_cuda_thread_runs_every_call_on_its_one_thread():
    record = {"opened": [], "released": []}

    def recording_context():
        record["opened"].append(threading.current_thread().name)
        return lambda: record["released"].append(threading.current_thread().name)
    worker = CudaThread(recording_context, name="recording-cuda")
    seen = set(worker.call(lambda: threading.current_thread().name) for _ in range(5))
    callers = []
    threads = [threading.Thread(target=lambda: callers.append(worker.call(lambda: threading.current_thread().name)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == set(callers) == {"recording-cuda"} and record["opened"] == ["recording-cuda"]
    assert worker.call(lambda: worker.call(lambda: 42)) == 42  # re-entrant: no deadlock
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)
    worker.close()
    assert record["released"] == ["recording-cuda"]


def test_cuda_thread_reports_a_failed_context():
    def failing():
        raise RuntimeError("no CUDA device")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        CudaThread(failing)


class _Freed(object):
    """Records, on deletion, its name and the thread it died on (CPython deletes at the last reference)."""

    def __init__(self, name, log, holds=()):
        self.name, self.log, self.holds = name, log, holds

    def free(self):
        self.log.append(("free " + self.name, threading.current_thread().name))

    def __del__(self):
        self.log.append((self.name, threading.current_thread().name))


def test_close_releases_buffers_context_engine_runtime_in_order_on_the_cuda_thread_before_the_pop():
    from device.backends.tensorrt_backend import TensorRTBackend
    log = []
    backend = object.__new__(TensorRTBackend)  # its CUDA objects only: TensorRT and pycuda are not here
    backend._thread = CudaThread(lambda: (lambda: log.append(("context popped", threading.current_thread().name))),
                                 name="recording-cuda")
    backend._runtime = _Freed("runtime", log)
    backend.engine = _Freed("engine", log)
    backend.context = _Freed("context", log)
    backend.io = _Freed("io", log, holds=(backend.engine, backend.context))  # as the real I/O shims do
    backend._device = {"input_0": _Freed("input buffer", log)}
    backend._host = {"input_0": np.zeros(4, np.float32)}
    backend.stream = _Freed("stream", log)

    def run():  # what network_only returns to device-bench: it must not keep the engine alive
        return backend.io
    backend.close()
    assert [name for name, _ in log] == ["free input buffer", "input buffer", "io", "context", "engine", "runtime",
                                         "stream", "context popped"]
    assert {thread for _, thread in log} == {"recording-cuda"}
    assert run() is None and backend._thread is None
    backend.close()  # twice is harmless


def _tensorrt_and_gpu():
    from device.backends.tensorrt_backend import tensorrt_ready
    return tensorrt_ready()


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_tensorrt_logits_match_torch(tmp_path):
    ok, reason = _tensorrt_and_gpu()
    if not ok:
        pytest.skip("needs TensorRT, pycuda and a CUDA GPU: " + reason)
    import torch
    from device.backends import open_backend
    images = np.random.RandomState(2).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = tiny_model().eval()(torch.from_numpy(images)).numpy()
    with open_backend(tiny_onnx(), backend="tensorrt", max_batch=4, cache_dir=str(tmp_path), log=None) as opened:
        np.testing.assert_allclose(opened.infer(images), expected, atol=1e-3, rtol=1e-3)
        assert opened.describe()["engine"]["built_now"]
        run = opened.network_only(images[:4])
        opened.run_in_context(run)
    with open_backend(tiny_onnx(), backend="tensorrt", max_batch=4, cache_dir=str(tmp_path), log=None) as again:
        assert not again.describe()["engine"]["built_now"]  # loaded from the cache
        np.testing.assert_allclose(again.infer(images), expected, atol=1e-3, rtol=1e-3)


class _Allocation(object):
    def __init__(self, record):
        self.record = record

    def free(self):
        self.record.append(("free", threading.current_thread().name))


def test_a_failed_open_releases_what_it_made_on_the_cuda_thread_before_the_context_goes():
    from engines.errors import EngineError
    from device.backends.tensorrt_backend import open_on_thread
    record = []
    worker = CudaThread(lambda: lambda: record.append(("context released", threading.current_thread().name)),
                        name="recording-cuda")

    class Holder(object):
        pass
    holder = Holder()

    def opener():  # gets as far as buffers and a context, then the engine is refused
        holder._device = {"input_0": _Allocation(record)}
        holder.context = object()
        raise EngineError("refused")
    with pytest.raises(EngineError, match="refused"):
        open_on_thread(worker, opener, holder)
    assert record == [("free", "recording-cuda"), ("context released", "recording-cuda")]
    assert holder.context is None and holder._device == {}


def test_a_signal_during_the_build_does_not_wait_for_the_build():
    import os
    import signal
    from device.backends.tensorrt_backend import open_on_thread
    building, finish = threading.Event(), threading.Event()
    worker = CudaThread(lambda: None, name="recording-cuda")

    def build():
        building.set()
        finish.wait()

    def interrupt():
        building.wait()
        # to the main thread itself: a process-directed kill may land on a worker thread, whose wake-up
        # never reaches a main thread blocked in a lock (the suite hung here beside a busy loop)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        open_on_thread(worker, build, object())
    assert not finish.is_set()  # back here while the build still runs: nobody waited for it
    finish.set()


def test_a_failure_on_the_gpu_preprocessing_path_is_one_line_naming_the_model():
    from contract.errors import DeviceError
    from contract.model_info import ModelInfo
    from device.backends.tensorrt_backend import TensorRTBackend
    backend = object.__new__(TensorRTBackend)
    backend.info = ModelInfo.from_onnx(tiny_onnx())
    backend.preprocess_path = "gpu"
    backend._thread = CudaThread(lambda: None, name="recording-cuda")

    def failing(frame):
        raise RuntimeError("cuLaunchKernel failed: an illegal memory access was encountered\nmore detail")
    backend._infer_frame_here = failing
    try:
        with pytest.raises(DeviceError) as caught:
            backend.infer_frame(np.zeros((48, 64, 3), np.uint8))
    finally:
        backend._thread.close()
    message = str(caught.value)
    assert backend.info.path in message and "illegal memory access" in message and "\n" not in message
