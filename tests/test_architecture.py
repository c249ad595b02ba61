"""The floor plan (docs/architecture.md), enforced with import-linter: packages import only downward,
host -> device -> engines | calibration -> contract, and engines and calibration never import each other; inside
host, host-evolve (host.evolve) and host-serve (host.serve) never import each other and share only the run folder
(host.run). An upward import or a cycle between packages, lazy imports inside functions included, fails here."""
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
    assert "2 kept, 0 broken" in done.stdout


def copy_of_the_tree(tmp_path, module, lazy_import):
    """The packages and pyproject.toml copied under tmp_path, with ``lazy_import`` added inside a function of
    ``module`` (a path relative to the root)."""
    for package in ("host", "device", "engines", "calibration", "contract"):
        shutil.copytree(os.path.join(PROJECT, package), str(tmp_path / package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(PROJECT, "pyproject.toml"), str(tmp_path / "pyproject.toml"))
    with open(str(tmp_path / module), "a") as handle:
        handle.write("\n\ndef _forbidden():\n    " + lazy_import + "  # noqa: F401\n")
    return str(tmp_path)


def test_an_upward_import_is_caught(tmp_path):
    """The contract can fail: a copy of the tree where contract imports device (a cycle) is refused."""
    done = lint_imports(cwd=copy_of_the_tree(tmp_path, "contract/files.py", "from device import sources"))
    assert done.returncode != 0
    assert "contract.files -> device.sources" in done.stdout, done.stdout


def test_host_serve_importing_the_evolution_is_caught(tmp_path):
    """The second contract can fail: host-serve reaching a rule of host-evolve (as it once did through
    host/report.py -> host/steering.py) is refused, naming the import."""
    done = lint_imports(cwd=copy_of_the_tree(tmp_path, "host/serve/app.py", "from host.evolve import steering"))
    assert done.returncode != 0
    assert "host.serve.app -> host.evolve.steering" in done.stdout, done.stdout
    assert "1 kept, 1 broken" in done.stdout, done.stdout


def test_the_run_folder_importing_a_program_is_caught(tmp_path):
    """host.run is shared by both programs, so it imports neither: a lazy import of host-serve's app is refused."""
    done = lint_imports(cwd=copy_of_the_tree(tmp_path, "host/run/lineage.py", "from host.serve import app"))
    assert done.returncode != 0
    assert "host.run.lineage -> host.serve.app" in done.stdout, done.stdout


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


def test_no_generation_file_name_is_spelled_outside_contract():
    """The files of a generation folder are named once, in contract/generation_files.py: a string literal (not a
    docstring) in the product code or the benches that spells one is a second truth that can drift. The trials
    (trials/) are exempt: their fuzzers spell mangled names on purpose."""
    import io
    import re
    import tokenize
    from pathlib import Path
    names = re.compile(r"model\.onnx|model-b1\.onnx|model\.fp16\.onnx|labels\.txt|card\.json|reference\.npz|"
                       r"offspring-(\d|K)")
    root = Path(PROJECT)
    found = []
    for package in ("host", "device", "engines", "calibration", "contract", "bench", "scripts"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "generation_files.py":
                continue
            tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline))
            significant = [t for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL)]
            for before, token, after in zip([None] + significant, significant, significant[1:] + [None]):
                docstring = (before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)) \
                    and after is not None and after.type == tokenize.NEWLINE
                if token.type == tokenize.STRING and not docstring and names.search(token.string):
                    found.append("{}:{}".format(path.relative_to(root), token.start[0]))
    assert found == [], "spell these with contract.generation_files' names: " + ", ".join(found)
