"""The files of one generation folder (``RUN/gen-XX/``), named once for both sides.

host-evolve writes them (host/evolve/export.py, the offspring weights through host/evolve/checkpoints.py),
host-serve serves them (``GET /models/<generation>/<file>``), the run layout records them in lineage.sqlite,
and device-serve, device-bench and device-agent find them beside a model (labels, the reference outputs) or
ask host-serve for them. A file name typed anywhere else is a second truth that can drift (issue 28).

    RUN/gen-XX/model.onnx        the generation: opset 13, input_0 NCHW float32 with a dynamic batch axis
    RUN/gen-XX/model-b1.onnx     the same network with a static batch of 1 (jetson-inference loads it as is)
    RUN/gen-XX/model.fp16.onnx   the same weights in float16 (host-evolve --fp16-onnx; TensorRT 11 has no FP16 flag)
    RUN/gen-XX/labels.txt        one label per line, in the order of the output's scores
    RUN/gen-XX/card.json         generation, sha256 of every model file, genome, top-1, preprocessing
    RUN/gen-XX/reference.npz     a few inputs and ONNX Runtime's outputs for them (contract/reference.py)
    RUN/gen-XX/offspring-K.pt    offspring K's trained weights and genome (host-evolve's model file)

Python >= 3.6 (the device side reads it).
"""

import os

MODEL_ONNX = "model.onnx"
STATIC_BATCH_ONNX = "model-b1.onnx"  # batch fixed at 1: what jetson-inference's imagenet loads as is
FP16_ONNX = "model.fp16.onnx"
LABELS_TXT = "labels.txt"
CARD_JSON = "card.json"
REFERENCE_NPZ = "reference.npz"
OFFSPRING_WEIGHTS = "offspring-{}.pt"  # .format(K)

MODEL_FILES = (MODEL_ONNX, STATIC_BATCH_ONNX, FP16_ONNX)
# what host-serve hands out of a generation folder, with its media type
SERVED_FILES = {MODEL_ONNX: "application/octet-stream", STATIC_BATCH_ONNX: "application/octet-stream",
                FP16_ONNX: "application/octet-stream", LABELS_TXT: "text/plain; charset=utf-8",
                CARD_JSON: "application/json", REFERENCE_NPZ: "application/octet-stream"}
# card.json's key for each checked file beside model.onnx (its sha256 is card[key]["sha256"])
CARD_KEYS = {STATIC_BATCH_ONNX: "static_batch", FP16_ONNX: "fp16", REFERENCE_NPZ: "reference"}
#: the served files whose bytes host-serve checks against a sha256 before sending (X-SHA256)
CHECKED_FILES = (MODEL_ONNX, STATIC_BATCH_ONNX, FP16_ONNX, REFERENCE_NPZ)


def cached_reference(model_path):
    """Where a device keeps the reference outputs it fetched for the model cached at ``model_path``
    (``<sha256>.onnx`` -> ``<sha256>.reference.npz``), beside it, one per model."""
    return os.path.splitext(str(model_path))[0] + ".reference.npz"


def offspring_weights(offspring):
    """``offspring-K.pt``: the file name of offspring ``offspring`` (an int >= 0) of a generation."""
    return OFFSPRING_WEIGHTS.format(int(offspring))


def generation_url_path(generation, name=MODEL_ONNX):
    """``/models/<generation>/<name>``: where host-serve answers with a generation's file (``generation``: a
    number, ``best`` or ``latest``)."""
    return "/models/{}/{}".format(generation, name)
