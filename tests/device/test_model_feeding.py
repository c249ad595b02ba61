"""A model is checked against what the command will send, at load: fixed batches are padded or refused with
the fix, 1-channel models get grey frames, a foreign model's output convention is detected and said, and a
runtime failure is one line naming the model. Every model is made in the test and run by ONNX Runtime."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from contract.errors import DeviceError
from contract.model_info import ModelInfo
from device.backends import open_backend
from device.bench import bench_model, main as bench_main
from device.loop import to_probabilities
from tests.engines.foreign_onnx import foreign_onnx

PROJECT = Path(__file__).resolve().parents[2]


def device_serve(*args):
    done = subprocess.run([sys.executable, "-m", "device.serve"] + [str(a) for a in args], cwd=str(PROJECT),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def frames(folder, count=3, grey=False):
    os.makedirs(str(folder), exist_ok=True)
    for index in range(count):
        image = np.full((24, 40), 40 + 70 * index, np.uint8)
        cv2.imwrite(str(folder / "{}.png".format(index)), image if grey else cv2.merge([image, image // 2, image]))
    return folder


def test_a_fixed_batch_of_1_measures_batch_1_and_names_the_dynamic_model_for_8(tmp_path, capsys):
    dynamic = foreign_onnx(tmp_path / "model.onnx")
    fixed = foreign_onnx(tmp_path / "model-b1.onnx", input_shape=(1, 3, 32, 32))
    heard = []
    report = bench_model(fixed, "onnxruntime", batches=(1, 8), seconds=0.05, warmup_s=0, log=heard.append)
    assert [r["batch"] for r in report["results"]] == [1]
    assert report["refused"] == [{"batch": 8, "why": "{} has a fixed batch of 1: use {} (dynamic batch) for "
                                                     "--batch 8".format(fixed, dynamic)}]
    assert heard and "batch 8 not measured" in heard[0]
    assert bench_main(["--model", fixed, "--batch", "1,8", "--seconds", "0.05", "--warmup", "0",
                       "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "batch   1:" in out and "batch   8: not measured" in out and "model.onnx (dynamic batch)" in out


def test_a_fixed_batch_of_4_is_refused_for_batch_1_in_one_line(tmp_path, capsys):
    fixed = foreign_onnx(tmp_path / "static_b4.onnx", input_shape=(4, 3, 32, 32))
    assert bench_main(["--model", fixed, "--seconds", "0.05", "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fixed batch of 4: give --batch 4" in err and "Traceback" not in err


def test_a_fixed_batch_of_4_serves_one_frame_at_a_time_padded(tmp_path):
    fixed = foreign_onnx(tmp_path / "static_b4.onnx", input_shape=(4, 3, 32, 32), labels=["a", "b"])
    backend = open_backend(fixed, "onnxruntime", max_batch=1, log=None)
    frame = cv2.imread(str(frames(tmp_path / "f") / "1.png"))
    alone = backend.infer(backend.info.spec(frame))
    stacked = backend.infer(np.concatenate([backend.info.spec(frame)] * 4))
    assert alone.shape == (1, 2) and np.allclose(alone[0], stacked[0])
    assert "padded to 4" in backend.feeding_notes(batch=1)[0]
    code, out, err = device_serve("--model", fixed, "--source", tmp_path / "f", "--headless", "--status-every", "0",
                                  "--warmup", "0.05", "--backend", "onnxruntime", "--stats-json", tmp_path / "s.json")
    assert code == 0, err
    assert "fixed batch of 4" in out and json.loads((tmp_path / "s.json").read_text())["frames"] == 3


def test_a_grey_model_is_fed_grey_frames(tmp_path):
    weights = np.array([[1.0, -1.0]], np.float32)
    grey = foreign_onnx(tmp_path / "grey.onnx", input_shape=(1, 1, 32, 32), weights=weights, labels=["ok", "bad"])
    info = ModelInfo.from_onnx(grey)
    assert info.spec.channels == 1 and info.spec.color == "GRAY"
    frame = cv2.imread(str(frames(tmp_path / "f", grey=True) / "2.png"))  # 3-channel BGR as sources give
    tensor = info.spec(frame)
    expected_mean = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).mean() / 255.0 - 0.449) / 0.226
    assert tensor.shape == (1, 1, 32, 32) and abs(float(tensor.mean()) - expected_mean) < 1e-3
    backend = open_backend(grey, "onnxruntime", max_batch=1, log=None)
    assert np.allclose(backend.infer(tensor)[0], [expected_mean, -expected_mean], atol=1e-3)
    code, out, err = device_serve("--model", grey, "--source", tmp_path / "f", "--headless", "--status-every", "0",
                                  "--warmup", "0.05", "--backend", "onnxruntime", "--stats-json", tmp_path / "s.json")
    assert code == 0, err
    assert "1-channel input: frames are converted to grey" in out
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 3


def test_a_foreign_models_output_convention_is_detected_and_said(tmp_path):
    logits = ModelInfo.from_onnx(foreign_onnx(tmp_path / "a.onnx"))
    probs = ModelInfo.from_onnx(foreign_onnx(tmp_path / "b.onnx", softmax=True))
    assert (logits.output_kind, probs.output_kind) == ("logits", "probabilities")
    assert "Softmax" in probs.output_why
    given = np.array([[0.7, 0.3]])
    assert np.allclose(to_probabilities(given, "probabilities"), given)  # not softmaxed a second time
    assert np.allclose(to_probabilities(np.log(given), "log_probabilities"), given)
    assert np.allclose(to_probabilities(np.log(given), "logits"), given)
    backend = open_backend(str(tmp_path / "b.onnx"), "onnxruntime", max_batch=1, log=None)
    assert any("output read as probabilities (its graph ends in Softmax)" in n for n in backend.feeding_notes())


def test_a_runtime_failure_is_one_line_naming_the_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    # loads fine, fails at run time for any batch but 1 (a Reshape to a fixed [1, 3], as some exports do)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Reshape", ["p", "shape"], ["f"]),
         helper.make_node("Gemm", ["f", "W", "B"], ["y"])], "reshape1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1, 3], np.int64), "shape"),
         numpy_helper.from_array(np.ones((3, 2), np.float32), "W"), numpy_helper.from_array(np.zeros(2, np.float32), "B")])
    path = str(tmp_path / "reshape1.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    backend = open_backend(path, "onnxruntime", max_batch=8, log=None)
    with pytest.raises(DeviceError) as caught:
        backend.infer(np.zeros((2, 3, 32, 32), np.float32))
    assert path in str(caught.value) and "\n" not in str(caught.value)
