"""Fixtures the host tests share: the generated shapes dataset (host/evolve/demo.py's, real PNG files on disk) in
the size each module asks for. The settings of a run that tests mechanics rather than learning are
tests/host/settings.py's MECHANICS."""
import pytest

@pytest.fixture(scope="module")
def shapes(request, tmp_path_factory):
    """A shapes dataset (DIR/<class>/*.png) made once per module: ``SHAPES = (images per class, pixels)`` in
    the module, (8, 36) without one."""
    pytest.importorskip("torch")
    from host.evolve.demo import write_demo_dataset
    per_class, size = getattr(request.module, "SHAPES", (8, 36))
    return write_demo_dataset(tmp_path_factory.mktemp("shapes"), per_class=per_class, size=size)
