"""Export a generation to ONNX: opset 13, ``input_0``/``output_0``, dynamic batch, simplified, checked,
compared with torch under ONNX Runtime on real images, with labels, preprocessing and genome in its
metadata, and labels.txt + card.json beside it (what device-serve loads).

Beside ``model.onnx`` every generation carries ``model-b1.onnx``: the same network with a *static* batch
of 1, for jetson-inference. Its ``c/tensorNet.cpp`` builds an explicit-batch network without an optimization
profile, so TensorRT refuses any dynamic axis ("Network has dynamic or shape inputs, but no optimization
profile has been defined"; dusty-nv/jetson-inference issues 870 and 1378)."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from contract.files import atomic_write, sha256_of_file
from contract.generation_files import (CARD_JSON, FP16_ONNX, LABELS_TXT, MODEL_ONNX, REFERENCE_NPZ,
                                       STATIC_BATCH_ONNX)
from contract.model_info import generation_metadata
from contract.preprocess import PreprocessSpec
from contract.reference import write_reference
from host.errors import HostError
from host.evolve.model import SqueezeNet

OPSET = 13  # TensorRT 8.2's ONNX parser (JetPack 4.6.1, the last for TX1) stops at opset 13
INPUT_NAME, OUTPUT_NAME = "input_0", "output_0"
PARITY_TOLERANCE = 1e-4


def jetson_inference_command(onnx_name: str = STATIC_BATCH_ONNX) -> str:
    """jetson-inference's command line, run in a generation's folder (it needs the static-batch file)."""
    return (f"imagenet --model={onnx_name} --input_blob={INPUT_NAME} --output_blob={OUTPUT_NAME} "
            "--labels=" + LABELS_TXT)


class ExportError(HostError):
    """The exported ONNX does not match the torch model (or does not pass the checker)."""


def with_static_batch(proto: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """A copy of a simplified dynamic-batch ``proto`` with every symbolic dimension of its inputs and outputs
    fixed at ``batch`` and its value_info inferred again, so no symbolic dimension is left anywhere.

    Re-tracing and re-simplifying would cost as much as the first export; this costs milliseconds. It is
    exact for these networks: their graph holds no shape arithmetic (Conv, Relu, Concat, MaxPool,
    GlobalAveragePool, Flatten), which the refusal below keeps true; parity is checked by the caller.
    """
    if any(node.op_type in ("Shape", "Size", "Reshape", "Expand", "ConstantOfShape") for node in proto.graph.node):
        raise ExportError("the graph computes shapes (Shape/Reshape/...): fixing its batch axis by rewriting "
                          "dimensions would not be safe; export it again with a static batch instead")
    static = copy.deepcopy(proto)
    for value in list(static.graph.input) + list(static.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param or not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch
    del static.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(static, check_type=True, strict_mode=True)


def onnx_from_model(model: SqueezeNet, spec: PreprocessSpec, half: bool = False,
                    static_batch: bool = False) -> onnx.ModelProto:
    """Trace the model to an opset-13 ONNX with a dynamic batch axis and simplify it.

    ``half``: every tensor float16, input and output included: the FP16 ONNX that TensorRT 11 (no FP16
    builder flag) builds strongly typed. ``static_batch``: the batch axis fixed at 1, no symbolic dimension
    anywhere (jetson-inference); :func:`export_generation` derives that file from the dynamic one with
    :func:`with_static_batch` instead of tracing twice.
    """
    dtype = torch.float16 if half else torch.float32
    model = copy.deepcopy(model).cpu().to(dtype).eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, spec.height, spec.width, dtype=dtype)
    buffer = io.BytesIO()
    # The TorchScript exporter, on purpose: it writes opset 13 directly, which TensorRT 8.2 (the last
    # for the TX1) needs; the dynamo exporter starts at opset 18 and down-converts.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes=None if static_batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_model_from_string(buffer.getvalue())
    try:
        from onnxsim import simplify
    except ImportError as error:
        raise HostError("onnx-simplifier is not installed: pip install 'squishednets[host]'") from error
    simplified, ok = simplify(proto)
    if not ok:
        raise ExportError("onnx-simplifier could not validate the simplified model; export without it is unsafe")
    return simplified


def add_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in entries.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, value


def check_parity(proto_bytes: bytes, model: SqueezeNet, images: np.ndarray, tolerance: float = PARITY_TOLERANCE,
                 input_dtype=np.float32, static_batch: bool = False) -> float:
    """Max |ORT - torch (fp32)| over ``images`` (float NCHW), at batch 1 and the whole batch (image by image
    with ``static_batch``); raise above ``tolerance``."""
    import onnxruntime as ort
    session = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    model = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    worst = 0.0
    spans = [(i, i + 1) for i in range(len(images))] if static_batch else [(0, 1), (0, len(images))]
    for start, stop in spans:
        got = session.run([OUTPUT_NAME], {INPUT_NAME: images[start:stop].astype(input_dtype)})[0].astype(np.float32)
        worst = max(worst, float(np.abs(got - expected[start:stop]).max()))
    if not worst <= tolerance:
        raise ExportError(f"ONNX Runtime and torch disagree: max |difference| = {worst:.3g} on {len(images)} real "
                          f"images (allowed {tolerance:g}); the export is not faithful, the run stops here")
    return worst


REFERENCE_IMAGES = 8


def write_reference_outputs(folder: Path, proto_bytes: bytes, images: np.ndarray, models: dict[str, str]) -> dict:
    """``folder/reference.npz`` (contract.reference): up to REFERENCE_IMAGES of ``images`` (real validation
    images, preprocessed), rounded to float16, and ONNX Runtime's FP32 CPU outputs for exactly those values --
    what device-bench --check and device-serve compare a TensorRT engine with. Returns the card's entry."""
    import onnxruntime as ort
    inputs = np.asarray(images[:REFERENCE_IMAGES], np.float16)
    session = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.astype(np.float32)})[0]
    producer = f"ONNX Runtime {ort.__version__} CPU fp32"
    write_reference(folder, inputs, outputs, models, producer)
    return {"file": REFERENCE_NPZ, "images": int(len(inputs)), "producer": producer, "for": sorted(models),
            "sha256": sha256_of_file(folder / REFERENCE_NPZ)}  # host-serve checks what it serves against it


def export_generation(model: SqueezeNet, folder: Path, *, spec: PreprocessSpec, labels: list[str],
                      generation: int, parity_images: np.ndarray, extra_card: dict | None = None,
                      fp16: bool = False) -> dict:
    """Write ``folder/{model.onnx, model-b1.onnx, labels.txt, reference.npz, card.json}`` (and ``model.fp16.onnx``
    with ``fp16``); return the card. reference.npz: ONNX Runtime's outputs for a few of ``parity_images``."""
    folder.mkdir(parents=True, exist_ok=True)
    genome = model.genome
    # the keys ModelInfo reads back (contract.model_info); not the run's name: equal weights make equal files
    metadata = generation_metadata(labels, spec, genome.to_json(), generation)

    def checked(half: bool, static_batch: bool = False) -> onnx.ModelProto:
        proto = onnx_from_model(model, spec, half=half, static_batch=static_batch)
        add_metadata(proto, metadata)
        proto.producer_name = "squishednets"
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as error:
            raise ExportError(f"generation {generation}: the exported ONNX fails onnx.checker: {error}") from error
        return proto

    dynamic = checked(half=False)
    data = dynamic.SerializeToString()
    difference = check_parity(data, model, parity_images)
    static = with_static_batch(dynamic)  # the metadata comes along with the copy
    try:
        onnx.checker.check_model(static, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"generation {generation}: the static-batch ONNX fails onnx.checker: {error}") from error
    static_data = static.SerializeToString()
    static_difference = check_parity(static_data, model, parity_images, static_batch=True)
    extra_files = {"static_batch": {"onnx": STATIC_BATCH_ONNX, "sha256": hashlib.sha256(static_data).hexdigest(),
                                    "batch": 1, "parity_max_abs_difference": static_difference,
                                    "for": "jetson-inference (no optimization profile: static shapes only)"}}
    if fp16:
        half_data = checked(half=True).SerializeToString()
        with torch.no_grad():
            scale = float(model.cpu().float().eval()(torch.from_numpy(parity_images)).abs().max())
        # fp16 keeps ~3 significant digits: allow 1 % of the logits' range
        half_difference = check_parity(half_data, model, parity_images, tolerance=0.01 * max(1.0, scale),
                                       input_dtype=np.float16)
        atomic_write(folder / FP16_ONNX, half_data)
        extra_files["fp16"] = {"onnx": FP16_ONNX, "sha256": hashlib.sha256(half_data).hexdigest(),
                               "parity_max_abs_difference": half_difference, "input_dtype": "float16"}
    models = {MODEL_ONNX: hashlib.sha256(data).hexdigest(), STATIC_BATCH_ONNX: extra_files["static_batch"]["sha256"]}
    if fp16:
        models[FP16_ONNX] = extra_files["fp16"]["sha256"]
    extra_files["reference"] = write_reference_outputs(folder, data, parity_images, models)
    atomic_write(folder / STATIC_BATCH_ONNX, static_data)
    atomic_write(folder / MODEL_ONNX, data)
    atomic_write(folder / LABELS_TXT, ("\n".join(labels) + "\n").encode("utf-8"))
    card = {"generation": generation, "onnx": MODEL_ONNX, "sha256": hashlib.sha256(data).hexdigest(),
            "opset": OPSET, "input": {"name": INPUT_NAME, "shape": ["batch", 3, spec.height, spec.width],
                                      "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", genome.num_classes], "meaning": "logits"},
            "labels": labels, "preprocess": spec.to_dict(), "genome": genome.to_dict(), "params": genome.params,
            "size_bytes": genome.size_bytes, "macs": genome.macs(spec.height),
            "parity_max_abs_difference": difference,
            "jetson_inference": jetson_inference_command()}
    card.update(extra_files)
    card.update(extra_card or {})
    atomic_write(folder / CARD_JSON, json.dumps(card, indent=2).encode("utf-8"))
    return card
