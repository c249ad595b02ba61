"""The ONNX Runtime backend on a real exported tiny model (logits equal torch's), open_backend's choices
and its errors."""
import numpy as np
import pytest

from device.backends import choose_backend, open_backend
from device.backends.onnxruntime_backend import provider_plan
from contract.errors import DeviceError
from tests.engines.tiny_onnx import SIZE, tiny_model, tiny_onnx


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    opened = open_backend(tiny_onnx(), backend="onnxruntime", max_batch=4,
                          cache_dir=str(tmp_path_factory.mktemp("cache")), log=None)
    yield opened
    opened.close()


def test_logits_equal_torch(backend):
    import torch
    images = np.random.RandomState(1).standard_normal((6, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = tiny_model().eval()(torch.from_numpy(images)).numpy()
    got = backend.infer(images)  # 6 > max_batch 4: split into 4 + 2
    assert got.shape == (6, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(backend.infer(images[0]), expected[:1], atol=1e-4, rtol=1e-4)  # CHW accepted


def test_interface_attributes_and_describe(backend):
    assert backend.name == "onnxruntime" and backend.precision == "fp32"
    assert backend.input_name == "input_0" and backend.input_shape == (None, 3, SIZE, SIZE)
    assert backend.why == "asked for onnxruntime"
    described = backend.describe()
    assert described["backend"] == "onnxruntime" and described["precision"] == "fp32"
    assert described["providers"] == ["CPUExecutionProvider"] and "onnxruntime" in described["versions"]
    assert described["model_sha256"] == backend.info.sha256
    assert backend.warmup(0.01) >= 1
    assert backend.network_only(np.zeros((1, 3, SIZE, SIZE), np.float32)) is None  # CPU: no copies


def test_wrong_input_shape_is_a_clear_error(backend):
    with pytest.raises(DeviceError, match="does not fit model .*model.onnx.s input input_0"):
        backend.infer(np.zeros((1, 3, SIZE + 1, SIZE), np.float32))


def test_auto_without_tensorrt_chooses_onnxruntime_and_says_why():
    assert choose_backend("auto", "fp32", lambda: (False, "no TensorRT here")) == \
        ("onnxruntime", "fp32", "auto: no TensorRT here, so ONNX Runtime")
    name, precision, why = choose_backend("auto", "fp16", lambda: (False, "no GPU"))
    assert (name, precision) == ("onnxruntime", "fp32") and "fp16 needs TensorRT" in why
    assert choose_backend("auto", "int8", lambda: (True, "TensorRT 8.2.1 and Tegra X1 found"))[:2] == \
        ("tensorrt", "int8")


def test_auto_opens_here(tmp_path):
    opened = open_backend(tiny_onnx(), cache_dir=str(tmp_path), log=None)
    assert opened.name == "onnxruntime" and opened.why.startswith("auto: ")
    opened.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "openvino"}, "backend 'openvino' is not one of auto, onnxruntime, tensorrt"),
    ({"precision": "fp8"}, "precision 'fp8' is not one of fp32, fp16, int8"),
    ({"backend": "onnxruntime", "precision": "int8"}, "INT8 is not offered on the onnxruntime backend"),
    ({"backend": "onnxruntime", "precision": "fp16"}, "fp16 on the onnxruntime backend needs"),
    ({"backend": "onnxruntime", "bogus": 1}, "does not take option"),
])
def test_bad_choices(tmp_path, kwargs, message):
    with pytest.raises(DeviceError, match=message):
        open_backend(tiny_onnx(), cache_dir=str(tmp_path), log=None, **kwargs)


def test_provider_plan_orders_tensorrt_cuda_cpu():
    providers, precision = provider_plan(["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                          "CPUExecutionProvider"], "fp16", "float32", "/cache", 256)
    assert [p if isinstance(p, str) else p[0] for p in providers] == \
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers[0][1]["trt_fp16_enable"] == "True" and precision == "fp16"
    assert provider_plan(["CPUExecutionProvider"], "fp16", "float16")[0] == ["CPUExecutionProvider"]


def test_tensorrt_ep_options_are_those_the_installed_onnx_runtime_knows():
    """An option newer than the ONNX Runtime is an error there: Jetson Zoo's 1.10 has no timing cache."""
    from device.backends.onnxruntime_backend import tensorrt_ep_options
    assert tensorrt_ep_options("1.8.1", "fp16", "/c") is None  # no options dict from Python yet
    old = tensorrt_ep_options("1.10.0", "fp16", "/c")
    assert old["trt_engine_cache_enable"] == "True" and "trt_timing_cache_enable" not in old
    mid = tensorrt_ep_options("1.11.0", "fp32", "/c", 64)
    assert mid["trt_timing_cache_enable"] == "True" and "trt_timing_cache_path" not in mid
    assert mid["trt_max_workspace_size"] == str(64 << 20) and mid["trt_fp16_enable"] == "False"
    new = tensorrt_ep_options("1.20.1", "fp16", "/c")
    assert new["trt_timing_cache_path"] == new["trt_engine_cache_path"] == "/c/ort-tensorrt"
    assert "trt_engine_cache_enable" not in tensorrt_ep_options("1.20.1", "fp16", None)
    providers, _ = provider_plan(["TensorrtExecutionProvider", "CPUExecutionProvider"], "fp32", "float32", "/c",
                                 256, ort_version="1.8.0")
    assert providers == ["TensorrtExecutionProvider", "CPUExecutionProvider"]


def test_tensorrt_backend_without_tensorrt_says_how_to_get_it(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; this checks the message where it is not")
    except ImportError:
        pass
    with pytest.raises(DeviceError):
        open_backend(tiny_onnx(), backend="tensorrt", cache_dir=str(tmp_path), log=None)


def test_a_tensorrt_provider_that_does_not_load_is_reported_as_what_runs(tmp_path):
    """ONNX Runtime falls back silently when a provider cannot load; the label must follow get_providers()."""
    from contract.model_info import ModelInfo
    from device.backends.onnxruntime_backend import CPU, TENSORRT, OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(ModelInfo.from_onnx(tiny_onnx()), "fp16", providers=[TENSORRT, CPU])
    assert backend.providers == [CPU]  # this onnxruntime has no TensorRT provider: it fell back
    assert backend.precision == "fp32"
    assert "did not load" in backend.describe()["precision_note"]


def test_effective_precision_follows_the_session_and_the_onnx():
    from device.backends.onnxruntime_backend import CPU, CUDA, TENSORRT, effective_precision
    assert effective_precision("fp16", "float32", [TENSORRT, CUDA, CPU]) == ("fp16", None)
    assert effective_precision("fp16", "float32", [CUDA, CPU])[0] == "fp32"
    precision, note = effective_precision("fp32", "float16", [CPU])
    assert precision == "fp16" and "the ONNX is FP16" in note
    assert effective_precision("fp32", "float32", [CPU]) == ("fp32", None)


def test_auto_with_neither_backend_carries_both_reasons_and_names_the_runtime_flag_on_a_jetson(monkeypatch):
    import sys
    from device.backends import no_backend_message
    from device.backends.tensorrt_backend import tensorrt_ready
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a container without the wheel has: ImportError
    with pytest.raises(DeviceError) as caught:
        open_backend(tiny_onnx(), "auto", log=None)
    message = str(caught.value)
    assert "TensorRT: " + tensorrt_ready()[1] in message and "ONNX Runtime: not importable" in message
    jetson = no_backend_message("TensorRT's Python bindings are not importable (No module named 'tensorrt')",
                                "not importable (No module named 'onnxruntime')", jetson=True)
    assert "--runtime nvidia" in jetson and "host-files-for-container.d" in jetson and "\n" not in jetson


def test_the_libraries_log_only_errors_unless_asked(tmp_path):
    """ONNX Runtime's, OpenCV's and FFmpeg's own warnings (52 lines a session for an opset-9 model) are kept to
    errors; --log-level verbose lets them through; what the user set in the environment stays."""
    from device.library_logs import ort_severity, quiet_libraries
    env = {}
    assert quiet_libraries(None, env) == 3 and env["OPENCV_FFMPEG_LOGLEVEL"] == "16"
    assert env["OPENCV_LOG_LEVEL"] == "ERROR" and ort_severity(env) == 3
    verbose = {}
    assert quiet_libraries("verbose", verbose) == 1 and verbose["OPENCV_FFMPEG_LOGLEVEL"] == "40"
    mine = {"OPENCV_LOG_LEVEL": "DEBUG"}
    quiet_libraries(None, mine)
    assert mine["OPENCV_LOG_LEVEL"] == "DEBUG"
    backend = open_backend(tiny_onnx(), backend="onnxruntime", cache_dir=str(tmp_path), log=None)
    try:
        assert backend._session.get_session_options().log_severity_level == ort_severity()
    finally:
        backend.close()
