"""host-evolve's output to a person: progress bars on a terminal only (none in a redirected log, none with
--quiet), and next-step commands that run from a fresh shell (no virtual environment on its PATH)."""
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tqdm import tqdm

from host.evolve import progress

PROJECT = Path(__file__).resolve().parents[2]
FRESH_SHELL = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


@pytest.fixture(autouse=True)
def not_quiet():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def draw(stream):
    for _ in tqdm(range(3), file=stream, disable=progress.bars_disabled(), mininterval=0):
        pass


def drain(leader):
    """Everything written to the terminal so far: a pty hands it out in pieces, all there once the writer
    flushed (the writes are synchronous), so read while select says more is ready, without waiting."""
    import select
    data = b""
    while select.select([leader], [], [], 0)[0]:
        data += os.read(leader, 65536)
    return data


def test_bars_only_on_a_terminal_and_none_with_quiet():
    log = io.StringIO()  # docker logs, CI, a file: not a terminal
    draw(log)
    assert log.getvalue() == ""
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert terminal.isatty()
            draw(terminal)
            terminal.flush()
            drawn = drain(leader)
            assert b"\r" in drawn and b"3/3" in drawn
            progress.set_quiet(True)
            draw(terminal)
            terminal.flush()
            assert drain(leader) == b""  # --quiet: nothing at all, even on a terminal
    finally:
        os.close(leader)
        os.close(follower)
    assert progress.bars_disabled(elsewhere=True) is True  # ranks other than 0 never draw


def test_quiet_is_a_host_evolve_flag():
    from host.evolve.cli import get_args_parser
    assert get_args_parser().parse_args(["--quiet"]).quiet is True


def runs_in_a_fresh_shell(line):
    """Run the command ``line`` with --help from a shell whose PATH has no virtual environment."""
    done = subprocess.run(shlex.split(line) + ["--help"], cwd=str(PROJECT), env=FRESH_SHELL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    return done.returncode == 0 and "usage:" in done.stdout


def test_the_next_step_commands_run_from_a_fresh_shell(capsys, tmp_path, monkeypatch):
    from host.evolve.cli import print_outcome
    monkeypatch.setenv("PATH", FRESH_SHELL["PATH"])
    monkeypatch.chdir(PROJECT)
    run = tmp_path / "my run"
    gens = [{"generation": 0, "size_mb": 2.0, "size_bytes": 2000000, "top1": 0.8, "onnx": "gen-00/model.onnx"},
            {"generation": 1, "size_mb": 1.0, "size_bytes": 1000000, "top1": 0.7, "onnx": "gen-01/model.onnx"}]
    print_outcome(SimpleNamespace(out=str(run)), {"generations": gens, "pareto": [0, 1], "best_generation": 1,
                                                  "best_reason": "the smallest"})
    lines = capsys.readouterr().out.splitlines()
    serve = next(line for line in lines if line.startswith("serve it to devices:")).split(":", 1)[1].strip()
    live = next(line for line in lines if line.startswith("classify live:")).split(":", 1)[1].strip()
    assert shlex.split(serve)[-2:] == ["--run", str(run)]  # a path with a space stays one argument
    assert str(run / "gen-01" / "model.onnx") in shlex.split(live)
    assert runs_in_a_fresh_shell(serve) and runs_in_a_fresh_shell(live)
