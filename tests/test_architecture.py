"""The floor plan (docs/architecture.md), enforced with import-linter: packages import only downward,
host -> device -> engines | calibration -> contract, and engines and calibration never import each other.
An upward import or a cycle between packages, lazy imports inside functions included, fails here."""
import os
import shutil
import subprocess
import sys

import pytest

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lint_imports(config=None, cwd=PROJECT):
    linter = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    if not os.path.exists(linter):
        pytest.skip("import-linter is not installed (it is in the dev extra: pip install import-linter)")
    command = [linter, "--no-cache"] + (["--config", config] if config else [])
    env = dict(os.environ, PYTHONPATH=cwd)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_packages_import_only_downward():
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_is_caught(tmp_path):
    """The contract can fail: a copy of the tree where contract imports device (a cycle) is refused."""
    for package in ("host", "device", "engines", "calibration", "contract"):
        shutil.copytree(os.path.join(PROJECT, package), str(tmp_path / package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(PROJECT, "pyproject.toml"), str(tmp_path / "pyproject.toml"))
    with open(str(tmp_path / "contract" / "files.py"), "a") as handle:
        handle.write("\n\ndef _upward():\n    from device import sources  # noqa: F401\n")
    done = lint_imports(cwd=str(tmp_path))
    assert done.returncode != 0
    assert "contract.files -> device.sources" in done.stdout, done.stdout


def test_every_file_the_written_here_table_names_exists():
    """docs/architecture.md says why each piece written here is not a library's: the files it names exist."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "architecture.md").read_text()
    section = text.split("## Written here, not taken from a library, and why", 1)[1]
    named = re.findall(r"^\| `([a-z_/]+\.py)`", section, re.M)
    named += re.findall(r"^\| `[a-z_/]+\.py`, `([a-z_/]+\.py)`", section, re.M)
    assert {"device/web.py", "contract/model_info.py", "device/reports.py"} <= set(named)
    assert [name for name in named if not (root / name).is_file()] == []
