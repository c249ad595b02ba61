"""host-evolve's progress bars: only on a terminal (never carriage returns and cursor escapes in ``docker logs``,
CI or a file), none at all with ``--quiet``. (The next-step commands it prints: host/evolve/cli.py's ``command``.)
"""
from __future__ import annotations

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress bars at all (the one-line-per-epoch and per-generation lines stay)."""
    global _quiet
    _quiet = bool(quiet)


def bars_disabled(elsewhere: bool = False) -> bool | None:
    """tqdm's ``disable=``: True when quiet or when ``elsewhere`` says so (a rank other than 0), else None,
    which is tqdm's own rule: a bar only when its stream (stderr) is a terminal."""
    return True if (_quiet or elsewhere) else None
