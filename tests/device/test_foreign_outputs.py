"""Foreign models' outputs read right (issue 31, kind 1): an FP16 model whose top logit overflows to +inf still
answers its class with a finite probability and no NaN reaches --stats-json; of several outputs the scores are
chosen and said, --output-blob picks one (jetson-inference's --output_blob too). Real ONNX files built here with
onnx's helper, run by ONNX Runtime through device-serve in a real process."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from device.loop import finite_outputs, to_probabilities  # noqa: E402


def save(graph, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def frames(folder, count=2, value=250):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((32, 32, 3), value, np.uint8))
    return folder


def device_serve(*args):
    done = subprocess.run([sys.executable, "-m", "device.serve", *map(str, args), "--headless", "--status-every", "0",
                           "--warmup", "0", "--backend", "onnxruntime"], capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout, done.stderr


def no_nan(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON")
    return json.loads(text, parse_constant=refuse)


def test_outputs_that_are_not_finite_are_read_as_the_models_answer():
    values, problem = finite_outputs(np.array([[np.inf, 0.0, 1.0]]))
    assert problem == "1 of 3 output values not finite (+inf)"
    assert to_probabilities(np.array([[np.inf, 0.0, 1.0]])).tolist() == [[1.0, 0.0, 0.0]]
    assert to_probabilities(np.array([[np.inf, np.inf, 1.0]])).tolist() == [[0.5, 0.5, 0.0]]
    assert to_probabilities(np.array([[np.nan, 2.0, 0.0]]))[0, 0] == 0.0
    assert to_probabilities(np.array([[np.nan, np.nan]])).tolist() == [[0.5, 0.5]]
    assert to_probabilities(np.array([[np.inf, 0.5, 0.2]]), "probabilities").tolist() == [[1.0, 0.0, 0.0]]
    assert finite_outputs(np.array([[1.0, 2.0]]))[1] is None


def test_an_fp16_overflow_answers_its_class_and_the_figures_stay_json(tmp_path):
    weights = numpy_helper.from_array(np.array([[1e6, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["data"], ["half"], to=TensorProto.FLOAT16),
         helper.make_node("GlobalAveragePool", ["half"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
         helper.make_node("Cast", ["W"], ["W16"], to=TensorProto.FLOAT16),
         helper.make_node("MatMul", ["flat", "W16"], ["logits"])], "fp16_overflow",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, [1, 3])], [weights])
    model = save(graph, tmp_path / "m" / "model.onnx")
    (tmp_path / "m" / "labels.txt").write_text("cat\ndog\nfox\n")
    code, out, err = device_serve("--model", model, frames(tmp_path / "frames"), "--stats-json", tmp_path / "s.json")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith(str(tmp_path / "frames"))]
    assert lines and all(line.endswith("100.00% cat") for line in lines), out
    assert out.count("the model's output is not finite") == 1 and "RuntimeWarning" not in err
    stats = no_nan((tmp_path / "s.json").read_text())
    assert stats["not_finite_frames"] == 2


def two_outputs(path, labels=True):
    weights = numpy_helper.from_array(np.array([[4, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32), "W")
    bias = numpy_helper.from_array(np.array([0, 0, 0.5], np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["data"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["loss"], axis=1),
         helper.make_node("ArgMax", ["loss"], ["classLabel"], axis=1, keepdims=1)], "two_outputs",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("classLabel", TensorProto.INT64, [1, 1]),
         helper.make_tensor_value_info("loss", TensorProto.FLOAT, [1, 3])], [weights, bias])
    save(graph, path)
    if labels:
        (path.parent / "labels.txt").write_text("apple\nbanana\ncherry\n")
    return path


def test_of_two_outputs_the_scores_are_read_and_said(tmp_path):
    model = two_outputs(tmp_path / "m" / "model.onnx")
    code, out, err = device_serve("--model", model, frames(tmp_path / "frames"))
    assert code == 0, err
    assert "has 2 outputs (classLabel int64 [1, 1], loss float32 [1, 3]): reading 'loss' as the class scores" in out
    assert f"{tmp_path / 'frames' / '0.jpg'}: 99.95% apple" in out


def test_output_blob_names_the_scores_and_a_wrong_name_lists_the_outputs(tmp_path):
    model = two_outputs(tmp_path / "m" / "model.onnx")
    code, out, err = device_serve("--model", model, frames(tmp_path / "frames"), "--output_blob", "loss")
    assert code == 0 and "reading 'loss'" not in out and "99.95% apple" in out, err
    code, out, err = device_serve("--model", model, frames(tmp_path / "frames"), "--output-blob", "prob")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no output 'prob'; its outputs are classLabel int64 [1, 1], loss float32 [1, 3]" in err
