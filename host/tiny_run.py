"""The tiny run folder's old import path (``from host.tiny_run import make_tiny_run``), kept for the scripts and
notes that use it: the module is host/evolve/tiny_run.py."""
from host.evolve.tiny_run import LABELS, SIZE, make_tiny_run  # noqa: F401
