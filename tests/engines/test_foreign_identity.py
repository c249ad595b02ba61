"""Foreign models' precision and identity read from the graph (issue 31, kind 1, part): an explicitly quantized
(Q/DQ) ONNX is built as INT8 from its own scales without a calibrator (the TensorRT paths driven by the recording
stand-ins of tests/engines/recording_tensorrt.py) and labelled int8-qdq by ONNX Runtime; a model with its weights
in a side file is identified by both files, and a URL that would bring the graph alone is refused before anything
is cached. Real ONNX files built with onnx's helper; a real HTTP server on loopback."""
import http.server
import os
import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from contract.model_info import ModelInfo  # noqa: E402
from engines.build import BuildSettings, engine_from_onnx, precision_plan  # noqa: E402
from tests.engines.recording_tensorrt import recording_tensorrt  # noqa: E402


def qdq_model(path):
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    weights = numpy_helper.from_array(np.eye(3, dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["data", "scale", "zero"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
         helper.make_node("GlobalAveragePool", ["dq"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits"])], "qdq",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [scale, zero, weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_a_qdq_model_is_int8_from_its_own_scales(tmp_path):
    info = ModelInfo.from_onnx(qdq_model(tmp_path / "qdq.onnx"))
    assert info.quantized
    trt = recording_tensorrt("8.2.1.8", fast_int8=True)
    plan = precision_plan(trt, trt.Builder(None), "fp32", info.input_dtype, quantized=True)
    assert plan["flags"] == ["INT8"] and "Q/DQ" in plan["notes"][0]
    engine_from_onnx(trt, info.path, info, BuildSettings("int8"), calibrator=None, log=lambda m: None)
    assert ("config.set_flag", "INT8") in trt.calls and "config.int8_calibrator" not in trt.calls.names()
    trt11 = recording_tensorrt("11.1.0")
    assert precision_plan(trt11, trt11.Builder(None), "fp32", "float32", quantized=True)["strongly_typed"]
    from device.engine_options import EngineOptions
    EngineOptions("tensorrt", "int8", cache_dir=str(tmp_path)).require_calibration(info, str(tmp_path))  # no refusal


def test_onnx_runtime_labels_a_qdq_model_int8(tmp_path):
    pytest.importorskip("onnxruntime")
    from device.backends import open_backend
    with open_backend(str(qdq_model(tmp_path / "qdq.onnx")), backend="onnxruntime", max_batch=1, log=None) as backend:
        assert backend.precision == "int8-qdq"
        assert backend.infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 3)


def side_file_model(folder, weights):
    folder.mkdir(parents=True)
    tensor = numpy_helper.from_array(np.asarray(weights, np.float32), "W")
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["data"], ["gap"]),
                               helper.make_node("Flatten", ["gap"], ["flat"]),
                               helper.make_node("MatMul", ["flat", "W"], ["logits"])], "side",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx"


def test_side_files_are_part_of_the_identity_and_a_url_bringing_the_graph_alone_is_refused(tmp_path):
    one = side_file_model(tmp_path / "v1", np.eye(3))
    two = side_file_model(tmp_path / "v2", np.eye(3)[::-1])
    assert one.read_bytes() == two.read_bytes()  # the graph files are the same bytes
    first, second = ModelInfo.from_onnx(one), ModelInfo.from_onnx(two)
    assert first.external_data == ["model.onnx.data"] and first.sha256 != second.sha256
    os.remove(str(tmp_path / "v2" / "model.onnx.data"))
    from contract.errors import ContractError
    with pytest.raises(ContractError, match="keeps its weights in .*model.onnx.data, which cannot be read"):
        ModelInfo.from_onnx(two)

    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(tmp_path / "v1"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from contract.errors import DeviceError
        from device.model_source import resolve_model
        with pytest.raises(DeviceError, match="keeps its weights in side file"):
            resolve_model("http://127.0.0.1:{}/model.onnx".format(server.server_address[1]),
                          cache_dir=str(tmp_path / "cache"))
    finally:
        server.shutdown()
    cached = list((tmp_path / "cache" / "models").glob("*")) if (tmp_path / "cache" / "models").is_dir() else []
    assert cached == []  # nothing kept of a model that cannot run
