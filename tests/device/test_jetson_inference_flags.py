"""jetson-inference's habits honoured (issue 31, kind 7, part): imagenet's flags (--labels, --input_blob,
--output_blob, --topK, --input-loop, --input-width/height, --input-rate, --log-level) are taken, not refused; a
model without labels is said; the exit summary carries imagenet's timing table. device-serve in a real process on
real ONNX files."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.engines.tiny_onnx import tiny_onnx  # noqa: E402


def device_serve(*args):
    done = subprocess.run([sys.executable, "-m", "device.serve", *map(str, args), "--headless", "--warmup", "0",
                           "--status-every", "0", "--backend", "onnxruntime"], capture_output=True, text=True,
                          timeout=180)
    return done.returncode, done.stdout, done.stderr


def bare_model(path):
    weights = numpy_helper.from_array(np.eye(3, dtype=np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "B")
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["data"], ["gap"]),
                               helper.make_node("Flatten", ["gap"], ["flat"]),
                               helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])], "bare",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [weights, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_imagenets_command_line_runs_as_printed(tmp_path):
    """The line card.json, README and host-serve's page print for jetson-inference, given to device-serve."""
    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.jpg"), np.full((40, 40, 3), 60 * i, np.uint8))
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    code, out, err = device_serve("--model", bare_model(tmp_path / "m.onnx"), tmp_path / "frames",
                                  "--input_blob=data", "--output_blob=logits", f"--labels={labels}", "--topK", "2",
                                  "--input-loop", "0", "--input-rate", "30", "--log-level", "info")
    assert code == 0, err
    assert any(line.endswith(("red", "green", "blue")) for line in out.splitlines() if "frames/0.jpg" in line), out
    assert "Pre-Process" in out and "Network" in out and "Post-Process" in out and "Total" in out
    assert "names no labels" not in out


def test_a_model_without_labels_is_said_and_wrong_flags_are_one_line(tmp_path):
    model = bare_model(tmp_path / "m.onnx")
    code, out, err = device_serve("--model", model, "--source", "synthetic", "--frames", "2")
    assert code == 0 and out.count("the model names no labels") == 1, err
    code, out, err = device_serve("--model", model, "--source", "synthetic", "--frames", "2", "--input_blob", "x")
    assert code == 2 and "the model's input is 'data'" in err and len(err.strip().splitlines()) == 1
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    code, out, err = device_serve("--model", model, "--source", "synthetic", "--frames", "2", "--labels", two)
    assert code == 2 and "2 label(s) for a model of 3 classes" in err


def test_input_loop_plays_a_folder_again(tmp_path):
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "0.jpg"), np.full((40, 40, 3), 90, np.uint8))
    code, out, err = device_serve("--model", tiny_onnx(), tmp_path / "frames", "--input-loop", "-1", "--frames", "5")
    assert code == 0 and "done: 5 frames" in out, err
