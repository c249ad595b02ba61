"""Every command answers --version with the one version (contract/version.py), the one pip installed."""
import subprocess
import sys
from importlib.metadata import version

import pytest

from contract.version import VERSION

COMMANDS = {"host-evolve": "host.evolve.cli", "host-serve": "host.serve.server", "device-serve": "device.serve",
            "device-bench": "device.bench", "device-agent": "device.agent"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_version_is_printed_and_exits_0(command):
    done = subprocess.run([sys.executable, "-m", COMMANDS[command], "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{command} (squishednets {VERSION})"


def test_the_installed_distribution_has_the_same_version():
    assert version("squishednets") == VERSION
