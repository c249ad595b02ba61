"""Shared fixtures: paths to the real data beside the project, and a tiny trained network exported to ONNX."""
import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
# device-serve opens a window wherever a display is there (as jetson-inference does): never during the tests
for _name in ("DISPLAY", "WAYLAND_DISPLAY"):
    os.environ.pop(_name, None)
SHARED = Path(os.environ.get("SQUISHEDNETS_SHARED", PROJECT.parent / "shared"))
CIFAR_MINI = SHARED / "datasets" / "cifar10-mini"
IMAGENETTE = SHARED / "datasets" / "imagenette"
PRETRAINED = SHARED / "weights" / "squeezenet1_1_imagenet.pth"


def needs(path):
    return pytest.mark.skipif(not Path(path).exists(), reason=f"{path} is not here (../shared beside the project)")
