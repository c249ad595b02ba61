"""Shared fixtures: paths to the real data beside the project, and a tiny trained network exported to ONNX."""
import os
import signal
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
# device-serve opens a window wherever a display is there (as jetson-inference does): never during the tests
for _name in ("DISPLAY", "WAYLAND_DISPLAY"):
    os.environ.pop(_name, None)
# started as a shell's background job (`.ci/run &`, nohup), a process inherits SIGINT ignored and Python then keeps
# it ignored: the tests that interrupt the main thread would wait forever, and every child would inherit it too.
# The suite runs the same from a terminal or in the background: Python's own Ctrl-C handler, as at a terminal
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# likewise `nohup`: the commands under test would inherit SIGHUP ignored, and a test of what SIGHUP does to them
# would test nohup instead
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def signal_handlers_as_found():
    """Every test starts with Python's own Ctrl-C handler and leaves the handlers as it found them: a test that
    runs a command's signal set-up in this process must not change what a later test's SIGINT does (a test that
    interrupts its main thread hung the suite that way, waiting for a KeyboardInterrupt that never came)."""
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for number, handler in kept.items():
        if handler is not None:
            signal.signal(number, handler)
SHARED = Path(os.environ.get("SQUISHEDNETS_SHARED", PROJECT.parent / "shared"))
CIFAR_MINI = SHARED / "datasets" / "cifar10-mini"
IMAGENETTE = SHARED / "datasets" / "imagenette"
PRETRAINED = SHARED / "weights" / "squeezenet1_1_imagenet.pth"


def needs(path):
    return pytest.mark.skipif(not Path(path).exists(), reason=f"{path} is not here (../shared beside the project)")
