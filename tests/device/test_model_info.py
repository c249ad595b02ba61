"""ModelInfo on real exported ONNX files, and a clear ContractError for every kind of bad model file."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from contract.errors import ContractError
from contract.model_info import ModelInfo
from contract.preprocess import PreprocessSpec
from tests.engines.tiny_onnx import LABELS, SIZE, tiny_onnx


def test_reads_interface_and_metadata_like_the_onnx_package():
    info = ModelInfo.from_onnx(tiny_onnx())
    proto = onnx.load(tiny_onnx())
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert info.input_name == proto.graph.input[0].name == "input_0"
    assert info.output_name == proto.graph.output[0].name == "output_0"
    assert info.input_shape == (None, 3, SIZE, SIZE) and info.output_shape == (None, 3)
    assert info.labels == LABELS == json.loads(metadata["labels"]) and info.num_classes == 3
    assert info.spec == PreprocessSpec.from_json(metadata["preprocess"]) and info.spec_source == "metadata"
    assert info.genome["conv1"] == 8 and info.generation == 0
    assert info.opsets["ai.onnx"] == 13 and len(info.sha256) == 64


def save(tmp_path, graph, metadata=None, name="model.onnx"):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def relu_graph(shape, dtype=TensorProto.FLOAT, out_shape=None):
    return helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                             [helper.make_tensor_value_info("x", dtype, shape)],
                             [helper.make_tensor_value_info("y", dtype, out_shape or shape)])


def test_foreign_image_onnx_gets_default_preprocessing_and_labels_txt(tmp_path):
    path = save(tmp_path, helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 64, 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])]))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    info = ModelInfo.from_onnx(path)
    assert info.spec_source == "default" and (info.spec.height, info.spec.width) == (64, 48)
    assert info.labels == ["a", "b", "c"]


@pytest.mark.parametrize("shape, dtype", [([1, 10], TensorProto.FLOAT), (["n", 3, "h", "w"], TensorProto.FLOAT),
                                          (["n", 5, 32, 32], TensorProto.FLOAT), (["n", 3, 32, 32], TensorProto.INT64)])
def test_non_image_input_is_refused(tmp_path, shape, dtype):
    path = save(tmp_path, relu_graph(shape, dtype, out_shape=[1, 10]))
    with pytest.raises(ContractError, match="not an NCHW image batch"):
        ModelInfo.from_onnx(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n" * 10, b"\x89PNG\r\n\x1a\n" + bytes(range(256))])
def test_not_onnx_is_refused(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ContractError, match="is not an ONNX model"):
        ModelInfo.from_onnx(str(path))


def test_truncated_onnx_is_refused(tmp_path):
    data = open(tiny_onnx(), "rb").read()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ContractError, match="is not an ONNX model"):
        ModelInfo.from_onnx(str(path))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        ModelInfo.from_onnx(str(tmp_path / "nope.onnx"))


def test_labels_that_do_not_fit_the_outputs_are_refused(tmp_path):
    path = save(tmp_path, relu_graph(["n", 3, 32, 32], out_shape=["n", 3]), {"labels": json.dumps(["a", "b"])})
    with pytest.raises(ContractError, match="2 labels but 3 outputs"):
        ModelInfo.from_onnx(path)


def test_preprocess_size_must_match_input(tmp_path):
    path = save(tmp_path, relu_graph(["n", 3, 32, 32], out_shape=["n", 2]),
                {"preprocess": PreprocessSpec.square(64).to_json(), "labels": '["a", "b"]'})
    with pytest.raises(ContractError, match="64x64 but its input is 32x32"):
        ModelInfo.from_onnx(path)


def test_folder_with_model_onnx_is_accepted():
    import os
    info = ModelInfo.from_onnx(os.path.dirname(tiny_onnx()))
    assert info.path == tiny_onnx() and np.isfinite(len(info.sha256))
