"""host-serve refuses to start below a workable limit, in one line naming it (issue 32, kind 3, host-serve's part):
under ``ulimit -n 48`` or a 1 GB ``ulimit -v`` it used to start and then answer 500s with a traceback per request.
A real host-serve process under real limits."""
import resource
import subprocess
import sys

import pytest

from host.errors import HostError
from host.serve.server import MIN_ADDRESS_SPACE, MIN_OPEN_FILES, check_limits


def test_the_limits_rule():
    check_limits((MIN_OPEN_FILES, MIN_ADDRESS_SPACE))
    check_limits((None, None))  # unlimited
    with pytest.raises(HostError, match=r"the open-file limit is 48 \(ulimit -n\); host-serve needs at least"):
        check_limits((48, None))
    with pytest.raises(HostError, match=r"the address-space limit is 953 MB \(ulimit -v\)"):
        check_limits((4096, 1000000 * 1000))


def test_host_serve_under_a_low_open_file_limit_says_so_and_exits_2(tmp_path):
    from tests.tiny_run import make_tiny_run
    run = tmp_path / "run"
    run.mkdir()
    make_tiny_run(run)

    def low():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    done = subprocess.run([sys.executable, "-m", "host.serve.server", "--run", str(run), "--bind", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=120, preexec_fn=low)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"host-serve: error: the open-file limit is 48 (ulimit -n); host-serve needs at least {MIN_OPEN_FILES}: "
        "raise it (ulimit -n 1024, or LimitNOFILE=1024 in its systemd unit)"]
    assert not (run / "host-serve.token").exists()
