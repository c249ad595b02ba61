"""The device side never imports torch (its Python 3.6 grammar and vermin: tests/test_dockerfile.py)."""
import os
import subprocess
import sys


PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("contract", "device", "engines", "calibration")


def test_importing_every_module_never_imports_torch():
    script = (
        "import importlib, pkgutil, sys\n"
        "names = []\n"
        "for package in {packages!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    names.append(package)\n"
        "    for info in pkgutil.walk_packages(module.__path__, package + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "        names.append(info.name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules, 'not lazy'\n"
        "print(len(names))\n").format(packages=PACKAGES)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert int(done.stdout.split()[-1]) >= 15


# numpy API newer than 1.13.3 (l4t-base's and JetPack 4's system numpy, which docker/requirements-l4t.txt admits):
# each was once used on the device side or is the usual slip; (pattern, the numpy version that added it)
NUMPY_AFTER_1_13 = ((r'kind\s*=\s*["\']stable["\']', "1.15"), (r"\bdefault_rng\b", "1.17"),
                    (r"\.quantile\(", "1.15"), (r"\btake_along_axis\b", "1.15"), (r"\bnanquantile\b", "1.15"),
                    (r"\bGenerator\(", "1.17"))


def test_the_device_side_uses_no_numpy_api_newer_than_jetpacks_1_13():
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("device", "engines", "calibration", "contract"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for pattern, version in NUMPY_AFTER_1_13:
                for match in re.finditer(pattern, text):
                    line = text[:match.start()].count("\n") + 1
                    found.append("{}:{} ({}, numpy {})".format(path.relative_to(root), line, match.group(0), version))
    assert found == [], "numpy 1.13.3 has none of these: " + ", ".join(found)
