"""ONNX export: the contract (opset, names, dynamic batch, metadata), the checker, and parity with torch."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contract.preprocess import PreprocessSpec
from contract.files import sha256_of_file as sha256_of
from host.evolve.export import ExportError, check_parity, export_generation
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from tests.conftest import CIFAR_MINI, needs

GENOME = Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = SqueezeNet(GENOME).eval()
    spec = PreprocessSpec.square(40)
    images = np.random.default_rng(0).standard_normal((4, 3, 40, 40)).astype(np.float32)
    card = export_generation(model, tmp_path / "gen-03", spec=spec, labels=["ant", "bee", "cow"], generation=3,
                             parity_images=images)
    return model, spec, card, tmp_path / "gen-03"


def test_export_follows_the_onnx_contract(exported):
    model, spec, card, folder = exported
    proto = onnx.load(folder / "model.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 13
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input_0" and out.name == "output_0"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 40, 40]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["labels"]) == ["ant", "bee", "cow"]
    assert PreprocessSpec.from_json(meta["preprocess"]) == spec
    assert Genome.from_dict(json.loads(meta["genome"])) == GENOME
    assert (folder / "labels.txt").read_text().splitlines() == ["ant", "bee", "cow"]
    assert card["sha256"] == sha256_of(folder / "model.onnx")
    assert json.loads((folder / "card.json").read_text())["params"] == GENOME.params


def test_onnxruntime_matches_torch_at_any_batch(exported):
    model, _, card, folder = exported
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((5, 3, 40, 40)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["output_0"], {"input_0": x})[0], expected, atol=1e-4)
    assert card["parity_max_abs_difference"] <= 1e-4


def test_a_model_that_disagrees_stops_the_export_and_shows_the_difference(exported):
    model, _, _, folder = exported
    other = SqueezeNet(GENOME).eval()  # different weights
    x = np.random.default_rng(2).standard_normal((2, 3, 40, 40)).astype(np.float32)
    with pytest.raises(ExportError, match=r"max \|difference\| = [0-9.e-]+ on 2 real images"):
        check_parity((folder / "model.onnx").read_bytes(), other, x)


def test_fp16_export_for_tensorrt_11_runs_and_stays_close(tmp_path):
    torch.manual_seed(0)
    model = SqueezeNet(GENOME).eval()
    images = np.random.default_rng(0).standard_normal((3, 3, 40, 40)).astype(np.float32)
    card = export_generation(model, tmp_path, spec=PreprocessSpec.square(40), labels=["a", "b", "c"], generation=0,
                             parity_images=images, fp16=True)
    proto = onnx.load(tmp_path / "model.fp16.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert card["fp16"]["sha256"] == sha256_of(tmp_path / "model.fp16.onnx") != card["sha256"]
    session = ort.InferenceSession(str(tmp_path / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["output_0"], {"input_0": images.astype(np.float16)})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=0.01 * max(1.0, np.abs(expected).max()))
    from contract.model_info import ModelInfo
    assert ModelInfo.from_onnx(str(tmp_path / "model.fp16.onnx")).input_dtype == "float16"


def test_every_generation_carries_a_static_batch_onnx_that_jetson_inference_loads(exported):
    """jetson-inference builds without an optimization profile: the b1 file has no symbolic dimension at all
    and gives the same outputs as the dynamic model.onnx."""
    model, spec, card, folder = exported
    proto = onnx.load(folder / "model-b1.onnx")
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto)
    values = list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info)
    dims = [d for v in values for d in v.type.tensor_type.shape.dim]
    assert dims and all(d.HasField("dim_value") and not d.dim_param for d in dims)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 40, 40]
    assert {p.key: p.value for p in proto.metadata_props}["labels"] == json.dumps(["ant", "bee", "cow"])
    static = ort.InferenceSession(str(folder / "model-b1.onnx"), providers=["CPUExecutionProvider"])
    dynamic = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for image in np.random.default_rng(3).standard_normal((3, 1, 3, 40, 40)).astype(np.float32):
        np.testing.assert_allclose(static.run(["output_0"], {"input_0": image})[0],
                                   dynamic.run(["output_0"], {"input_0": image})[0], atol=1e-5)
    assert card["static_batch"]["sha256"] == sha256_of(folder / "model-b1.onnx")
    assert card["static_batch"]["parity_max_abs_difference"] <= 1e-4
    assert card["jetson_inference"].startswith("imagenet --model=model-b1.onnx --input_blob=input_0")


@needs(CIFAR_MINI)
def test_the_static_batch_onnx_gives_the_dynamic_ones_outputs_on_real_images(exported):
    """Real JPEGs (cifar10-mini), preprocessed as the device does, one by one through model-b1.onnx and as one
    batch through model.onnx: the same logits."""
    import cv2
    model, spec, card, folder = exported
    paths = sorted(CIFAR_MINI.glob("test/*/*.jpg"))[::50][:6]
    assert len(paths) == 6
    batch = np.concatenate([spec(cv2.imread(str(path), cv2.IMREAD_COLOR)) for path in paths])
    static = ort.InferenceSession(str(folder / "model-b1.onnx"), providers=["CPUExecutionProvider"])
    dynamic = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert static.get_inputs()[0].shape == [1, 3, 40, 40] and dynamic.get_inputs()[0].shape[0] == "batch"
    together = dynamic.run(["output_0"], {"input_0": batch})[0]
    one_by_one = np.concatenate([static.run(["output_0"], {"input_0": image[None]})[0] for image in batch])
    np.testing.assert_allclose(one_by_one, together, atol=1e-5)
    with pytest.raises(Exception):  # a batch of 2 is refused by the static file: it really is batch 1
        static.run(["output_0"], {"input_0": batch[:2]})


def test_the_static_batch_twin_is_derived_without_a_second_trace_and_refuses_shape_arithmetic():
    from onnx import TensorProto, helper
    from host.evolve.export import with_static_batch
    x = helper.make_tensor_value_info("input_0", TensorProto.FLOAT, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("output_0", TensorProto.FLOAT, ["batch", 48])
    graph = helper.make_graph([helper.make_node("Relu", ["input_0"], ["r"]), helper.make_node("Flatten", ["r"],
                               ["output_0"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    static = with_static_batch(proto)
    values = list(static.graph.input) + list(static.graph.output) + list(static.graph.value_info)
    assert [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in values] == [[1, 3, 4, 4], [1, 48], [1, 3, 4, 4]]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # the original is untouched
    shaped = helper.make_model(helper.make_graph([helper.make_node("Shape", ["input_0"], ["output_0"])], "s", [x],
                                                 [helper.make_tensor_value_info("output_0", TensorProto.INT64, [4])]),
                               opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ExportError, match="computes shapes"):
        with_static_batch(shaped)
