"""The device side runs on JetPack 4.6's Python 3.6 and never imports torch."""
import os
import shutil
import subprocess
import sys

import pytest

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("device", "engines", "calibration")


def test_vermin_finds_nothing_newer_than_python_36():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.skip("vermin is not installed (pip install vermin)")
    done = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations"]
                          + list(PACKAGES), cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout


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
