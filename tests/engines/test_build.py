"""The builder sequence and the TensorRT-version paths, driven by recording stand-ins (tests/engines/
recording_tensorrt.py: they record calls, they are not TensorRT), on a real exported ONNX and a real cache."""
import os

import pytest

from contract.model_info import ModelInfo
from engines import tensorrt_api as api
from engines.build import BuildSettings, cached_engine_from_onnx, engine_from_onnx
from engines.errors import EngineError
from engines.gpu import GpuInfo
from tests.engines.recording_tensorrt import recording_tensorrt
from tests.engines.tiny_onnx import tiny_onnx

TX1 = GpuInfo("NVIDIA Tegra X1", (5, 3), 4 << 30)
ORIN = GpuInfo("Orin", (8, 7), 8 << 30)


@pytest.fixture(scope="module")
def info():
    return ModelInfo.from_onnx(tiny_onnx())


def quiet(message):
    pass


def test_trt82_sequence_fp16(info, tmp_path):
    trt = recording_tensorrt("8.2.1.8")
    timing = str(tmp_path / "timing.cache")
    engine = engine_from_onnx(trt, info.path, info, BuildSettings("fp16", 1, 1, 8, 256), timing, log=quiet)
    assert engine == b"RECORDING-ENGINE-8.2.1.8"
    names = trt.calls.names()
    assert names == ["Logger", "Builder", "create_network", "OnnxParser", "parse", "create_builder_config",
                     "config.max_workspace_size", "config.set_flag", "profile.set_shape",
                     "config.add_optimization_profile", "config.create_timing_cache", "config.set_timing_cache",
                     "build_serialized_network"]
    calls = dict(trt.calls)
    assert calls["create_network"] == 1  # 1 << EXPLICIT_BATCH
    assert calls["config.max_workspace_size"] == 256 << 20
    assert calls["config.set_flag"] == "FP16"
    assert calls["profile.set_shape"] == ("input_0", (1, 3, 32, 32), (1, 3, 32, 32), (8, 3, 32, 32))
    assert calls["config.set_timing_cache"] is False
    assert open(timing, "rb").read() == b"+timings"  # saved after the build, read back next time
    engine_from_onnx(trt, info.path, info, BuildSettings("fp32"), timing, log=quiet)
    assert ("config.create_timing_cache", b"+timings") in trt.calls


def test_trt10_uses_memory_pool_and_no_fp16_for_fp32(info):
    trt = recording_tensorrt("10.3.0")
    engine_from_onnx(trt, info.path, info, BuildSettings("fp32", workspace_mb=128), log=quiet)
    calls = dict(trt.calls)
    assert calls["config.set_memory_pool_limit"] == ("WORKSPACE", 128 << 20)
    assert "config.max_workspace_size" not in calls and "config.set_flag" not in calls


def test_parser_errors_are_shown_in_full(info):
    trt = recording_tensorrt("8.2.1.8", parse_ok=False)
    with pytest.raises(EngineError) as caught:
        engine_from_onnx(trt, info.path, info, BuildSettings(), log=quiet)
    text = str(caught.value)
    assert "2 error(s)" in text and "In node 0 (importConv)" in text and "full description 1" in text
    assert "code=UNSUPPORTED_NODE" in text and "opset" in text


def test_failed_build_says_what_to_try(info):
    trt = recording_tensorrt("8.2.1.8", build_ok=False)
    with pytest.raises(EngineError, match="workspace"):
        engine_from_onnx(trt, info.path, info, BuildSettings(), log=quiet)


def test_trt11_has_no_precision_flags(info):
    trt = recording_tensorrt("11.0.0")
    assert not api.has_precision_flags(trt)
    assert api.network_creation_flags(trt) == 0
    engine_from_onnx(trt, info.path, info, BuildSettings("fp32"), log=quiet)
    with pytest.raises(EngineError, match="FP16 ONNX"):
        engine_from_onnx(trt, info.path, info, BuildSettings("fp16"), log=quiet)
    with pytest.raises(EngineError, match="Q/DQ"):
        engine_from_onnx(trt, info.path, info, BuildSettings("int8"), log=quiet)


def test_int8_refused_on_tx1_suggesting_fp16(info):
    trt = recording_tensorrt("8.2.1.8", fast_int8=False)
    with pytest.raises(Exception, match="fp16"):
        engine_from_onnx(trt, info.path, info, BuildSettings("int8"), calibrator=object(), log=quiet)
    assert "build_serialized_network" not in trt.calls.names()


def test_int8_sequence_sets_calibrator_and_profile(info):
    trt = recording_tensorrt("8.2.1.8", fast_int8=True)
    calibrator = object()
    engine_from_onnx(trt, info.path, info, BuildSettings("int8"), calibrator=calibrator, log=quiet)
    calls = trt.calls
    assert ("config.set_flag", "INT8") in calls and ("config.set_flag", "FP16") in calls
    assert ("config.int8_calibrator", calibrator) in calls and "config.set_calibration_profile" in calls.names()


def test_settings_are_checked():
    with pytest.raises(EngineError, match="precision"):
        BuildSettings("fp8")
    with pytest.raises(EngineError, match="min <= opt <= max"):
        BuildSettings("fp32", 1, 9, 8)


def test_cached_engine_built_once_then_loaded_then_rebuilt_when_truncated(info, tmp_path):
    trt = recording_tensorrt("8.2.1.8")
    settings = BuildSettings("fp16", 1, 1, 8)
    entry, data, sidecar, built = cached_engine_from_onnx(trt, info, settings, TX1, str(tmp_path), log=quiet)
    assert built and data == b"RECORDING-ENGINE-8.2.1.8"
    assert sidecar["key"]["gpu_name"] == "NVIDIA Tegra X1" and sidecar["key"]["compute_capability"] == "5.3"
    assert sidecar["key"]["onnx_sha256"] == info.sha256 and sidecar["key"]["batch_profile"] == [1, 1, 8]
    assert os.path.isfile(os.path.join(str(tmp_path), "engines", "timing-trt8.2.1.8-NVIDIA-Tegra-X1-sm53.cache"))
    builds = trt.calls.names().count("build_serialized_network")
    _, again, _, built = cached_engine_from_onnx(trt, info, settings, TX1, str(tmp_path), log=quiet)
    assert not built and again == data and trt.calls.names().count("build_serialized_network") == builds
    with open(entry.engine_path, "r+b") as handle:
        handle.truncate(4)
    messages = []
    _, rebuilt, _, built = cached_engine_from_onnx(trt, info, settings, TX1, str(tmp_path), log=messages.append)
    assert built and rebuilt == data and any("truncated" in m for m in messages)
    # another TensorRT or GPU is a different key: a separate build, the first entry untouched
    other = recording_tensorrt("10.3.0")
    other_entry, _, _, built = cached_engine_from_onnx(other, info, settings, ORIN, str(tmp_path), log=quiet)
    assert built and other_entry.engine_path != entry.engine_path and entry.check() is None


def test_fp32_clears_tf32_and_fp16_does_not(info):
    """TensorRT turns TF32 on by default: an "fp32" engine on Ampere+ would otherwise be TF32."""
    for version in ("8.2.1.8", "10.3.0", "11.1.0"):
        trt = recording_tensorrt(version)
        engine_from_onnx(trt, info.path, info, BuildSettings("fp32"), log=quiet)
        assert ("config.clear_flag", "TF32") in trt.calls, version
        if version.startswith("11"):
            continue  # no FP16 builder flag there: fp16 comes from an FP16 ONNX
        trt = recording_tensorrt(version)
        engine_from_onnx(trt, info.path, info, BuildSettings("fp16"), log=quiet)
        assert "config.clear_flag" not in trt.calls.names()


def test_a_refused_timing_cache_is_replaced_by_a_fresh_one(info, tmp_path):
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"from-another-gpu")
    trt = recording_tensorrt("8.2.1.8", timing_cache="mismatch")
    logged = []
    engine = engine_from_onnx(trt, info.path, info, BuildSettings("fp16"), str(timing), log=logged.append)
    assert engine == b"RECORDING-ENGINE-8.2.1.8"
    creates = [args for name, args in trt.calls if name == "config.create_timing_cache"]
    assert creates == [b"from-another-gpu", b""]
    assert any("was refused" in line and "fresh one" in line for line in logged)
    assert timing.read_bytes() == b"+timings"  # replaced after the build


@pytest.mark.parametrize("failure", ["none", "serialize-fails"])
def test_a_failing_timing_cache_never_costs_the_built_engine(info, tmp_path, failure):
    trt = recording_tensorrt("8.2.1.8", timing_cache=failure)
    logged = []
    entry, data, sidecar, built = cached_engine_from_onnx(trt, info, BuildSettings("fp16", 1, 1, 8), TX1,
                                                          str(tmp_path), log=logged.append)
    assert built and data == b"RECORDING-ENGINE-8.2.1.8"
    assert entry.load()[2] is None  # stored and valid: the next start loads it
    assert any("warning" in line and "timing cache" in line for line in logged)
    assert not [name for name in os.listdir(os.path.join(str(tmp_path), "engines")) if name.endswith(".cache")]


class RecordingRuntime(object):
    """trt.Runtime's deserialize_cuda_engine: refuses (None) the first ``refusals`` engines, as TensorRT does
    with an engine made by another driver or library, then returns a marker naming the bytes it got."""

    def __init__(self, refusals):
        self.refusals = refusals
        self.given = []

    def deserialize_cuda_engine(self, data):
        self.given.append(bytes(data))
        if len(self.given) <= self.refusals:
            return None
        return ("engine", len(self.given))


def test_the_loader_hands_over_a_ready_engine_and_rebuilds_one_tensorrt_refuses(info, tmp_path):
    from engines.build import load_engine
    trt, settings, messages = recording_tensorrt("8.2.1.8"), BuildSettings("fp16", 1, 1, 1), []
    engine, entry, _, built = load_engine(trt, RecordingRuntime(0), info, settings, TX1, str(tmp_path), log=quiet)
    assert engine == ("engine", 1) and built and os.path.isfile(entry.engine_path)
    # cached now; TensorRT refuses the cached file once: the entry is dropped and built again
    runtime = RecordingRuntime(1)
    engine, entry, _, built = load_engine(trt, runtime, info, settings, TX1, str(tmp_path), log=messages.append)
    assert engine == ("engine", 2) and built and len(runtime.given) == 2
    assert any("could not deserialize" in m and "rebuilding" in m for m in messages)
    # a fresh build TensorRT refuses too: one line, no loop
    with pytest.raises(EngineError, match="cannot deserialize the engine it just built"):
        load_engine(trt, RecordingRuntime(5), info, settings, TX1, str(tmp_path / "other"), log=quiet)


def test_one_logger_serves_every_build_and_the_runtime(info):
    """TensorRT 8.2 warns when the runtime's logger differs from the builder's: one a process."""
    from engines.tensorrt_api import shared_logger
    trt = recording_tensorrt("8.2.1.8")
    engine_from_onnx(trt, info.path, info, BuildSettings("fp16"), None, log=quiet)
    engine_from_onnx(trt, info.path, info, BuildSettings("fp32"), None, log=quiet)
    assert trt.calls.names().count("Logger") == 1
    assert shared_logger(trt) is shared_logger(trt)
    assert shared_logger(recording_tensorrt("10.3.0")) is not shared_logger(trt)


def test_tactic_sources_as_trtexec_writes_them(info):
    """--tactic-sources -CUDNN,-CUBLAS,-CUBLAS_LT clears those bits of TensorRT's default mask; the setting is in
    the engine's key; a bad item or a source this TensorRT lacks is one line."""
    from engines.build import EngineError, parse_tactic_sources
    assert parse_tactic_sources("-CUDNN, +cublas") == [("CUDNN", False), ("CUBLAS", True)]
    assert parse_tactic_sources(None) == []
    with pytest.raises(EngineError, match="each item is"):
        parse_tactic_sources("CUDNN")
    trt = recording_tensorrt("8.2.1.8")
    settings = BuildSettings("fp16", tactic_sources="-CUDNN,-CUBLAS,-CUBLAS_LT")
    engine_from_onnx(trt, info.path, info, settings, None, log=quiet)
    assert dict(trt.calls)["config.set_tactic_sources"] == 0  # 0b111 less all three
    assert settings.to_dict()["tactic_sources"] == "-CUDNN,-CUBLAS,-CUBLAS_LT"
    with pytest.raises(EngineError, match="TensorRT 8.2.1.8 has no tactic source EDGE_MASK_CONVOLUTIONS"):
        engine_from_onnx(trt, info.path, info, BuildSettings("fp16", tactic_sources="-EDGE_MASK_CONVOLUTIONS"),
                         None, log=quiet)
    plain = recording_tensorrt("8.2.1.8")
    engine_from_onnx(plain, info.path, info, BuildSettings("fp16"), None, log=quiet)
    assert "config.set_tactic_sources" not in plain.calls.names()  # TensorRT's default left alone
