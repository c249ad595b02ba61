"""device.engine_options: device-serve, device-bench and device-agent take one engine option group, and INT8 on
TensorRT without --calibration is one line naming the fix in each (checked before any TensorRT work, so here)."""
import pytest

from contract.precisions import PRECISIONS
from device import agent, bench, serve
from tests.engines.tiny_onnx import tiny_onnx

COMMANDS = {"device-serve": (serve, ["--model", "M", "--source", "synthetic"]),
            "device-bench": (bench, ["--model", "M"]),
            "device-agent": (agent, ["--follow", "http://127.0.0.1:9", "--token", "t" * 32])}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_the_group(command, tmp_path):
    module, base = COMMANDS[command]
    for precision in PRECISIONS:
        args = module.get_args_parser().parse_args(base + [
            "--backend", "tensorrt", "--precision", precision, "--calibration", str(tmp_path),
            "--workspace-mb", "512", "--cache-dir", str(tmp_path)])
        assert (args.backend, args.precision, args.calibration, args.workspace_mb, args.cache_dir) == \
            ("tensorrt", precision, str(tmp_path), 512, str(tmp_path))
    assert "--calibration DIR" in module.get_args_parser().format_help()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_int8_on_tensorrt_without_calibration_is_one_line_naming_the_fix(command, tmp_path, capsys):
    module, base = COMMANDS[command]
    argv = [tiny_onnx() if arg == "M" else arg for arg in base]
    argv += ["--backend", "tensorrt", "--precision", "int8", "--cache-dir", str(tmp_path), "--frames", "1"] \
        if command == "device-serve" else ["--backend", "tensorrt", "--precision", "int8", "--cache-dir",
                                           str(tmp_path)]
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(command + ": error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "add --calibration DIR" in err and "--precision int8" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("extra, message", [
    (["--precision", "fp64"], "--precision 'fp64': precision 'fp64' is not one of fp32, fp16, int8"),
    (["--backend", "cuda"], "--backend 'cuda': backend 'cuda' is not one of auto, onnxruntime, tensorrt"),
    (["--workspace-mb", "8"], "--workspace-mb 8 must be between 16 and 65536"),
    (["--precision", "int8", "--calibration", "/no/such/folder"], "--calibration /no/such/folder is not a folder"),
])
def test_bad_engine_options_are_one_line(command, extra, message, tmp_path, capsys):
    module, base = COMMANDS[command]
    argv = [tiny_onnx() if arg == "M" else arg for arg in base] + extra + ["--cache-dir", str(tmp_path)]
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(command + ": error: ") and message in err and err.count("\n") == 1


def test_a_calibration_cache_from_an_earlier_run_is_enough(tmp_path):
    from calibration.cache import calibration_paths
    from contract.model_info import ModelInfo
    from device.engine_options import require_calibration
    info = ModelInfo.from_onnx(tiny_onnx())
    with pytest.raises(Exception, match="add --calibration DIR"):
        require_calibration(info, str(tmp_path), None)
    cache = calibration_paths(str(tmp_path), info, "8.2.1")[0]
    (tmp_path / "calibration").mkdir()
    open(cache, "wb").close()
    require_calibration(info, str(tmp_path), None)  # reused: no folder needed
    require_calibration(info, str(tmp_path / "empty"), str(tmp_path))  # a folder given: fine


def test_the_options_are_one_checked_value_passed_whole(tmp_path):
    """EngineOptions is built and checked once; open_backend and bench_model take it whole, and the loose
    keywords (host/evolve/latency.py's) make the same value."""
    from contract.errors import DeviceError
    from device.backends import open_backend
    from device.engine_options import EngineOptions
    engine = EngineOptions("onnxruntime", "fp32", workspace_mb=128, cache_dir=str(tmp_path))
    assert engine.backend_options() == {"workspace_mb": 128}
    with open_backend(tiny_onnx(), engine=engine, max_batch=1, log=None) as backend:
        assert backend.name == "onnxruntime"
    with pytest.raises(DeviceError, match="--workspace-mb 8 must be between"):
        EngineOptions(workspace_mb=8)
    with pytest.raises(DeviceError, match="every new generation is calibrated afresh"):
        EngineOptions("tensorrt", "int8").require_calibration(every_model=True)
    EngineOptions("onnxruntime", "int8").require_calibration(every_model=True)  # its backend refuses INT8 itself


def test_engine_options_import_no_backend():
    """The import circle device.backends <-> device.engine_options is gone: engine_options imports nothing of
    device.backends."""
    import ast
    from pathlib import Path
    source = (Path(__file__).resolve().parents[2] / "device" / "engine_options.py").read_text()
    imported = [node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    assert not any(module.startswith("device") for module in imported), imported


def test_tactic_sources_are_checked_with_the_other_engine_flags():
    import subprocess
    import sys
    from contract.errors import DeviceError
    from device.engine_options import EngineOptions
    with pytest.raises(DeviceError, match="each item is"):
        EngineOptions("tensorrt", "fp16", tactic_sources="CUDNN")
    assert EngineOptions("tensorrt", "fp16", tactic_sources="-CUDNN").backend_options() == {"tactic_sources": "-CUDNN"}
    result = subprocess.run([sys.executable, "-m", "device.bench", "--model", "m.onnx", "--tactic-sources", "+GPU"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--tactic-sources '+GPU'" in result.stderr and "Traceback" not in result.stderr
