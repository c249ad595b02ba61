"""Tracebacks and silent changes turned into one line naming the flag or file, the cause and the fix (issue 32, kinds
2 and 4, host-evolve's part): values out of range, devices that are not there, paths the system refuses, a disk
turned read-only, and a config.json edited behind the run's back. host-evolve in real processes on a real shapes
folder; nothing of a refused new run is left behind."""
import errno
import json
import os

import pytest

from host.evolve.run_folder import os_failure, write_failure
from tests.host.commands import flags, host_evolve, one_clear_line
from tests.host.settings import MECHANICS

SHAPES = (8, 36)


@pytest.mark.parametrize("extra, words", [
    ({"seed": -1}, "seed = -1 must be in [0, 2^32)"),
    ({"lr": 1e300}, "lr = 1e+300 must be in (0, 1000]"),
    ({"device": "tpu"}, "device = 'tpu' must be auto, cpu, cuda or cuda:N"),
])
def test_values_out_of_range_are_one_line_and_leave_nothing(shapes, tmp_path, extra, words):
    out = tmp_path / "run"
    one_clear_line(host_evolve(*flags(**dict(MECHANICS, data=shapes, out=out, **extra))), words)
    assert not out.exists()


def test_a_cuda_device_that_is_not_there_is_one_line(shapes, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: cuda:N would be there")
    out = tmp_path / "run"
    one_clear_line(host_evolve(*flags(**dict(MECHANICS, data=shapes, out=out, device="cuda:7"))),
                   "--device cuda:7: this torch sees no CUDA GPU", "--device cpu")
    assert not out.exists() or not (out / "config.json").exists()


def test_paths_the_system_refuses_are_one_line(shapes, tmp_path):
    long = tmp_path / ("r" * 300)
    one_clear_line(host_evolve(*flags(**dict(MECHANICS, data=shapes, out=long))), "File name too long",
                   "give a shorter path")
    config = tmp_path / "c.toml"
    config.write_text('cache_dir = "/proc/self/no-such-cache"\n')
    one_clear_line(host_evolve(*flags(**dict(MECHANICS, data=shapes, out=tmp_path / "run-b")), "--config", str(config)),
                   "/proc/self/no-such-cache", "give a place that exists or can be made")


def test_a_disk_turned_read_only_and_other_os_errors_say_what_to_do(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    line = write_failure(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "x")), tmp_path / "run")
    assert "its disk has become read-only" in line and "--resume" in line
    assert "permission denied" in os_failure(PermissionError(errno.EACCES, "permission denied", "/x"), None).lower()
    assert os_failure(ValueError("not an OS error"), None) is None


def test_a_config_json_edited_behind_the_runs_back_is_refused_by_name(shapes, tmp_path):
    run = tmp_path / "run"
    done = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=run)))
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    saved["image_size"] = 48
    (run / "config.json").write_text(json.dumps(saved))
    one_clear_line(host_evolve("--resume", str(run), "--generations", "1"),
                   "differs from the run's own record in lineage.sqlite", "image_size: 32 -> 48")
    assert sorted(os.listdir(run / "gen-00")) and not (run / "gen-01").exists()
