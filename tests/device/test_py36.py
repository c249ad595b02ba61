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
