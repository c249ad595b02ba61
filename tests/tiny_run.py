"""The one tiny run folder of the tests: host/evolve/tiny_run.py (in the package, so the trials in trials/ make the
same run), and host-serve serving it on loopback. Needs torch (host side): a test that makes one is skipped where
torch is not installed. The device side's own tiny ONNX is tests/engines/tiny_onnx.py."""
import contextlib
from pathlib import Path

import pytest

from host.evolve.tiny_run import LABELS, SIZE  # noqa: F401 (re-exported for the tests)


def make_tiny_run(run: Path, generations: int = 1, local_fps=100.0) -> list:
    """host.evolve.tiny_run.make_tiny_run, skipped without torch."""
    pytest.importorskip("torch")
    from host.evolve.tiny_run import make_tiny_run as make
    return make(run, generations, local_fps)


@contextlib.contextmanager
def serving(run: Path, token: str, **options):
    """host-serve (the real app, uvicorn on a loopback port) over ``run`` while the block runs; the server
    (``.url``). ``options``: create_app's (read_only, body_timeout_s); BackgroundServer's ``port``."""
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer
    port = options.pop("port", 0)
    server = BackgroundServer(create_app(run, token, **options), port=port).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def served_tiny_run(run: Path, token: str, generations: int = 1, local_fps=100.0):
    """A tiny run made in ``run`` (created) and served: (server, run, the first generation's card, or every
    card with ``generations`` > 1)."""
    run.mkdir(parents=True, exist_ok=True)
    cards = make_tiny_run(run, generations, local_fps)
    with serving(run, token) as server:
        yield server, run, cards[0] if generations == 1 else cards
