"""Tiny real ONNX files for the device-side tests: a two-fire-wide SqueezeNet exported by the host's own
exporter (so the metadata is the real thing), made once per test process."""
import os
import tempfile

import numpy as np

_MADE = {}
LABELS = ["cat", "dog", "bird"]
SIZE = 32


def tiny_model(seed=0):
    """The torch model behind :func:`tiny_onnx` (3 classes, 8-wide fires), with fixed random weights."""
    import torch
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet
    torch.manual_seed(seed)
    model = SqueezeNet(Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)).eval()
    return model


def tiny_onnx(seed=0):
    """Path to ``model.onnx`` exported by ``host.evolve.export.export_generation`` at 32x32; cached per process."""
    if seed in _MADE:
        return _MADE[seed]
    from pathlib import Path

    from contract.preprocess import PreprocessSpec
    from host.evolve.export import export_generation
    folder = Path(tempfile.mkdtemp(prefix="tiny-onnx-")) / "gen-00"
    images = np.random.RandomState(seed).rand(2, 3, SIZE, SIZE).astype(np.float32)
    export_generation(tiny_model(seed), folder, spec=PreprocessSpec.square(SIZE), labels=list(LABELS),
                      generation=seed, parity_images=images)
    _MADE[seed] = os.path.join(str(folder), "model.onnx")
    return _MADE[seed]
