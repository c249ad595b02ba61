"""Reference outputs stored with every exported generation, and the agreement of a backend with them.

What Polygraphy's ``run --trt --onnxrt`` gives its users, without Polygraphy on the Jetson: host-evolve runs a
few real (validation) images through the exported ONNX with ONNX Runtime's CPU provider in FP32 and stores
inputs and outputs beside the model (``reference.npz``); the device runs the same inputs through whatever it
built (a TensorRT FP16 or INT8 engine, ONNX Runtime on a GPU) and compares: top-1 agreement and the largest
absolute difference of the outputs, against a tolerance stated per precision.

The file (numpy's ``.npz``, no pickle): ``inputs`` float16 N x C x H x W (the network inputs, already
preprocessed; stored in float16 and the outputs computed from exactly those values, so nothing is lost),
``outputs`` float32 N x classes, ``about`` a JSON string: ``{"models": {file name: sha256}, "producer": ...,
"output_kind": ...}`` -- the reference is valid for each model file of its generation (model.onnx,
model-b1.onnx, model.fp16.onnx: the same weights).
"""
import json
import os

import numpy as np

from contract.errors import ContractError
from contract.generation_files import REFERENCE_NPZ, cached_reference

REFERENCE_FILE = REFERENCE_NPZ  # contract/generation_files.py

#: The stated tolerance, as a fraction of the reference outputs' range (max |output|, at least 1): FP32 engines
#: differ from ONNX Runtime by summation order only (TF32 is off); FP16 keeps ~3 significant digits; INT8 is
#: calibrated, not exact.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1.5e-1}


def write_reference(folder, inputs, outputs, models, producer, output_kind="logits"):
    """Store ``inputs`` (float N x C x H x W, kept as float16) and ``outputs`` (float32 N x classes, computed
    from the float16-rounded inputs) in ``folder/reference.npz``, atomically. ``models``: {file name: sha256}
    of the model files the outputs hold for."""
    import io
    from contract.files import atomic_write
    buffer = io.BytesIO()
    about = json.dumps({"models": dict(models), "producer": str(producer), "output_kind": output_kind},
                       sort_keys=True)
    np.savez_compressed(buffer, inputs=np.asarray(inputs, np.float16), outputs=np.asarray(outputs, np.float32),
                        about=np.array(about))
    atomic_write(os.path.join(str(folder), REFERENCE_FILE), buffer.getvalue())


class Reference(object):
    """``inputs`` (float32 N x C x H x W), ``outputs`` (float32 N x classes), ``about`` (dict), ``path``."""

    def __init__(self, path, inputs, outputs, about):
        self.path = path
        self.inputs = inputs
        self.outputs = outputs
        self.about = about

    def __len__(self):
        return len(self.inputs)


def load_reference(model_path, model_sha256):
    """The :class:`Reference` beside ``model_path`` when there is one for this model (its sha256 among the
    file's ``models``), else None. ContractError when the file is there but unreadable or for another model."""
    path = cached_reference(os.path.abspath(str(model_path)))  # fetched from host-serve beside a cached model
    if not os.path.isfile(path):
        path = os.path.join(os.path.dirname(os.path.abspath(str(model_path))), REFERENCE_FILE)  # its generation's
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            inputs = np.asarray(data["inputs"], np.float32)
            outputs = np.asarray(data["outputs"], np.float32)
            about = json.loads(str(data["about"]))
    except (IOError, OSError, ValueError, KeyError) as error:
        raise ContractError("reference outputs {} are unreadable ({}); export the generation again".format(
            path, error))
    if model_sha256 not in about.get("models", {}).values():
        raise ContractError("reference outputs {} belong to other model files ({}), not {} (sha256 {}...); the "
                            "folder mixes generations: export again".format(
                                path, ", ".join(sorted(about.get("models", {}))), model_path, model_sha256[:12]))
    if inputs.ndim != 4 or outputs.ndim != 2 or len(inputs) != len(outputs) or not len(inputs):
        raise ContractError("reference outputs {}: inputs {} and outputs {} do not match".format(
            path, inputs.shape, outputs.shape))
    return Reference(path, inputs, outputs, about)


def agreement(produced, reference, precision):
    """How ``produced`` (N x classes) agrees with ``reference`` (a :class:`Reference`): a JSON-ready dict.

    ``top1_match`` / ``images``, ``max_abs_diff``, ``tolerance`` (TOLERANCE[precision] x the reference's
    range), ``flips`` (top-1 changes where the reference's best two classes are further apart than the
    tolerance: a real disagreement, not a near-tie), and ``ok``: no flips and the difference within tolerance.
    """
    produced = np.asarray(produced, np.float32).reshape(reference.outputs.shape)
    expected = reference.outputs
    scale = max(1.0, float(np.abs(expected).max()))
    tolerance = TOLERANCE.get(precision, TOLERANCE["int8"]) * scale
    difference = float(np.abs(produced - expected).max())
    top_expected, top_produced = expected.argmax(axis=1), produced.argmax(axis=1)
    ordered = np.sort(expected, axis=1)
    margins = ordered[:, -1] - ordered[:, -2] if expected.shape[1] > 1 else np.full(len(expected), np.inf)
    flips = int(np.sum((top_expected != top_produced) & (margins > tolerance)))
    return {"images": int(len(expected)), "top1_match": int(np.sum(top_expected == top_produced)),
            "max_abs_diff": round(difference, 6), "tolerance": round(tolerance, 6), "flips": flips,
            "precision": precision, "reference": reference.about.get("producer", "?"),
            "ok": bool(flips == 0 and difference <= tolerance)}


def agreement_line(result):
    """One line for the console: "top-1 8/8 ... max |difference| 0.0004 (tolerance 0.05): agrees"."""
    verdict = "agrees" if result["ok"] else "DISAGREES beyond the stated tolerance"
    return "{} output vs {} on {} reference images: top-1 {}/{}, max |difference| {:.4g} (tolerance {:.3g}){}: " \
           "{}".format(result["precision"], result["reference"], result["images"], result["top1_match"],
                       result["images"], result["max_abs_diff"], result["tolerance"],
                       ", {} real flip(s)".format(result["flips"]) if result["flips"] else "", verdict)
