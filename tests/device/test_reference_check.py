"""Engines checked against their ONNX: host-evolve stores ONNX Runtime's FP32 outputs for a few real images with
every generation (reference.npz); device-bench --check and device-serve compare the backend with them. Here the
backends are ONNX Runtime's (an FP32 and an FP16 model, exported by the host's own exporter); a TensorRT engine
takes the same path (Backend.check_reference)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from contract.errors import ContractError
from contract.model_info import ModelInfo
from contract.reference import REFERENCE_FILE, Reference, agreement, load_reference, write_reference
from device.backends import open_backend
from device.bench import main as bench_main
from tests.engines.tiny_onnx import LABELS, SIZE, tiny_model

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generation():
    """A generation exported with its FP16 ONNX too, from real-looking (seeded) images."""
    from contract.preprocess import PreprocessSpec
    from host.evolve.export import export_generation
    folder = Path(tempfile.mkdtemp(prefix="reference-")) / "gen-00"
    import torch
    images = np.random.RandomState(3).rand(6, 3, SIZE, SIZE).astype(np.float32) * 4 - 2
    model = tiny_model(3)
    with torch.no_grad():  # logits that differ between images and classes (a fresh tiny net's are ~1.0 everywhere)
        for layer in model.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.bias.fill_(0.05)
        model.conv10.weight.mul_(100.0)
    card = export_generation(model, folder, spec=PreprocessSpec.square(SIZE), labels=list(LABELS),
                             generation=0, parity_images=images, fp16=True)
    yield folder, card
    shutil.rmtree(str(folder.parent))


def test_every_model_file_of_a_generation_has_its_reference(generation):
    folder, card = generation
    assert card["reference"]["images"] == 6 and (folder / REFERENCE_FILE).is_file()
    for name in ("model.onnx", "model-b1.onnx", "model.fp16.onnx"):
        info = ModelInfo.from_onnx(folder / name)
        reference = load_reference(info.path, info.sha256)
        assert reference.inputs.shape == (6, 3, SIZE, SIZE) and reference.outputs.shape == (6, len(LABELS))


@pytest.mark.parametrize("name, precision", [("model.onnx", "fp32"), ("model-b1.onnx", "fp32"),
                                             ("model.fp16.onnx", "fp16")])
def test_onnxruntime_agrees_with_the_reference_fp32_and_fp16(generation, name, precision):
    folder, _ = generation
    with open_backend(str(folder / name), "onnxruntime", max_batch=8, log=None) as backend:
        result = backend.check_reference()
    assert result["ok"] and result["top1_match"] == 6 and result["precision"] == precision
    if precision == "fp32":
        assert result["max_abs_diff"] < 1e-4  # the same runtime on the same inputs
    else:
        assert 0 < result["max_abs_diff"] <= result["tolerance"]  # FP16 differs, within its stated tolerance


def test_a_real_flip_fails_and_a_near_tie_does_not():
    outputs = np.array([[5.0, 1.0, 0.0], [2.0, 1.99, 0.0]], np.float32)
    reference = Reference("r", np.zeros((2, 3, 8, 8), np.float32), outputs, {"producer": "ONNX Runtime"})
    tie_swapped = np.array([[5.0, 1.0, 0.0], [1.99, 2.0, 0.0]], np.float32)  # within FP16's tolerance
    result = agreement(tie_swapped, reference, "fp16")
    assert result["ok"] and result["top1_match"] == 1 and result["flips"] == 0
    flipped = np.array([[1.0, 5.0, 0.0], [2.0, 1.99, 0.0]], np.float32)
    result = agreement(flipped, reference, "fp16")
    assert not result["ok"] and result["flips"] == 1 and result["max_abs_diff"] == 4.0


def test_device_bench_check_reports_the_agreement_and_exits_1_on_a_disagreeing_backend(generation, tmp_path,
                                                                                       capsys):
    folder, _ = generation
    args = ["--batch", "1", "--seconds", "0.05", "--warmup", "0", "--backend", "onnxruntime", "--check",
            "--out", str(tmp_path / "bench.json")]
    assert bench_main(["--model", str(folder / "model.onnx")] + args) == 0
    checks = json.loads((tmp_path / "bench.json").read_text())["checks"]
    assert len(checks) == 1 and checks[0]["ok"] and "top-1 6/6" in capsys.readouterr().out
    # the same model beside a reference whose outputs another network made: the comparison must fail
    other = tmp_path / "gen-01"
    other.mkdir()
    shutil.copy(str(folder / "model.onnx"), str(other / "model.onnx"))
    info = ModelInfo.from_onnx(other / "model.onnx")
    with np.load(str(folder / REFERENCE_FILE)) as data:
        wrong = data["outputs"][:, ::-1] * 3  # the classes in reverse order
        write_reference(other, data["inputs"], wrong, {"model.onnx": info.sha256}, "a stand-in reference")
    assert bench_main(["--model", str(other / "model.onnx")] + args) == 1
    captured = capsys.readouterr()
    assert "DISAGREES" in captured.out and "disagree with the model's reference" in captured.err


def test_check_needs_a_reference_and_a_reference_for_this_model(generation, tmp_path, capsys):
    folder, _ = generation
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(str(folder / "model.onnx"), str(alone / "model.onnx"))
    assert bench_main(["--model", str(alone / "model.onnx"), "--check", "--seconds", "0.05",
                       "--backend", "onnxruntime"]) == 2
    assert "no reference outputs beside it" in capsys.readouterr().err
    shutil.copy(str(folder / "model.onnx"), str(tmp_path / "model.onnx"))
    with np.load(str(folder / REFERENCE_FILE)) as data:
        write_reference(tmp_path, data["inputs"], data["outputs"], {"model.onnx": "0" * 64}, "another")
    with pytest.raises(ContractError, match="belong to other model files"):
        load_reference(str(tmp_path / "model.onnx"), ModelInfo.from_onnx(tmp_path / "model.onnx").sha256)


def test_device_serve_checks_once_at_start_and_reports_it(generation, tmp_path):
    folder, _ = generation
    stats = tmp_path / "stats.json"
    done = subprocess.run([sys.executable, "-m", "device.serve", "--model", str(folder / "model.fp16.onnx"),
                           "--source", "synthetic", "--frames", "3", "--headless", "--status-every", "0",
                           "--warmup", "0", "--backend", "onnxruntime", "--precision", "fp16",
                           "--stats-json", str(stats)], cwd=str(PROJECT), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert done.returncode == 0, done.stderr
    assert "check: fp16 output vs ONNX Runtime" in done.stdout and ": agrees" in done.stdout
    check = json.loads(stats.read_text())["reference_check"]
    assert check["ok"] and check["images"] == 6 and check["precision"] == "fp16"


def test_a_tensorrt_engine_is_checked_once_when_built_and_its_result_kept_beside_it(generation, tmp_path):
    """device-serve checks once per built engine: the result lies beside the cached engine and a later start on
    the same engine says it (here the TensorRT backend is a partly made object: its check storage is plain
    files; the check itself runs on ONNX Runtime)."""
    from device.backends.tensorrt_backend import TensorRTBackend
    from device.serve import check_against_reference
    folder, _ = generation
    with open_backend(str(folder / "model.fp16.onnx"), "onnxruntime", max_batch=1, log=None) as runner:
        engine = object.__new__(TensorRTBackend)
        engine.engine_path = str(tmp_path / "model.engine")
        engine._log = lambda line: None
        engine.built = True  # the first start: built now, so checked now and kept
        engine.check_reference = runner.check_reference
        said = []
        first = check_against_reference(engine, said.append)
        assert first["ok"] and os.path.isfile(engine.engine_path + ".check.json")
        engine.built = False  # a later start loads the cached engine: no second check
        engine.check_reference = lambda: pytest.fail("checked again although the engine was not rebuilt")
        again = check_against_reference(engine, said.append)
    assert again == json.loads(json.dumps(first)) and "when this engine was built" in said[-1]
