"""The one tiny run folder of the tests: host/evolve/tiny_run.py (in the package, so the trials in trials/ make the same
run). Needs torch (host side): a test that makes one is skipped where torch is not installed. The device side's
own tiny ONNX is tests/engines/tiny_onnx.py."""
from pathlib import Path

import pytest

from host.evolve.tiny_run import LABELS, SIZE  # noqa: F401 (re-exported for the tests)


def make_tiny_run(run: Path, generations: int = 1, local_fps=100.0) -> list:
    """host.evolve.tiny_run.make_tiny_run, skipped without torch."""
    pytest.importorskip("torch")
    from host.evolve.tiny_run import make_tiny_run as make
    return make(run, generations, local_fps)
