"""host-evolve when the run folder's files or disk fail it: one line naming the file and the fix, never a traceback,
and nothing lost. A damaged lineage, checkpoint or weights file on --resume; a full disk or a file-size limit while
writing; temporary files a stopped run left; SIGTERM handled as Ctrl-C is."""
import errno
import json
import os
import resource
import shutil
import signal
import sqlite3
import time

import numpy as np
import pytest

from contract.files import atomic_write
from contract.preprocess import PreprocessSpec
from tests.host.commands import flags, host_evolve, one_clear_line
from host.evolve.checkpoints import load_checkpoint
from host.evolve.config import resolve
from host.evolve.data import cache_split, scan_folder
from tests.host.settings import MECHANICS
from host.evolve.evolution import evolve
from host.evolve.run_folder import write_failure

SHAPES = (8, 36)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

TINY = dict(MECHANICS)  # tests/host/settings.py: mechanics, not learning, acceptance off


def partials(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*.partial"))


@pytest.fixture(scope="module")
def finished_run(shapes, tmp_path_factory):
    """Two generations (the ancestor and one offspring), finished."""
    run = tmp_path_factory.mktemp("runs") / "run"
    evolve(resolve({}, dict(TINY, generations=1, data=str(shapes), out=str(run))))
    return run


def copy_of(run, tmp_path):
    return shutil.copytree(run, tmp_path / "copy")


# -- damaged files on --resume -------------------------------------------------------------------
def test_a_lineage_that_is_not_sqlite_is_named_with_what_to_do(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    (run / "lineage.sqlite").write_bytes(np.random.default_rng(0).bytes(5000))
    for extra in run.glob("lineage.sqlite-*"):
        extra.unlink()
    one_clear_line(host_evolve("--resume", str(run), "--generations", "2"),
                   f"{run / 'lineage.sqlite'} is damaged (file is not a database)", "restore it from a backup",
                   f"--ancestor-from {run}/gen-XX/offspring-K.pt")


def test_a_lineage_with_a_damaged_page_is_found_before_anything_is_written(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    with sqlite3.connect(run / "lineage.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'generations'").fetchone()[0]
    data = bytearray((run / "lineage.sqlite").read_bytes())
    start = (root - 1) * page_size
    data[start:start + page_size] = b"\xff" * page_size  # the generations table's page overwritten
    (run / "lineage.sqlite").write_bytes(bytes(data))
    one_clear_line(host_evolve("--resume", str(run), "--generations", "2"), f"{run / 'lineage.sqlite'} is damaged")


def test_a_missing_lineage_beside_generations_is_not_a_fresh_start(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    (run / "lineage.sqlite").unlink()
    one_clear_line(host_evolve("--resume", str(run)), f"{run / 'lineage.sqlite'} is missing")
    assert not (run / "lineage.sqlite").exists()


def test_a_cut_checkpoint_is_named_and_deleting_it_as_told_lets_the_run_go_on(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    whole = (run / "gen-01" / "offspring-0.pt").read_bytes()  # a real torch file, cut short as a copy can be
    (run / "checkpoint.pt").write_bytes(whole[:len(whole) // 2])
    one_clear_line(host_evolve("--resume", str(run), "--generations", "2"),
                   f"{run / 'checkpoint.pt'} is damaged", "delete it and --resume again")
    (run / "checkpoint.pt").unlink()
    resumed = host_evolve("--resume", str(run), "--generations", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["generations"][-1]["generation"] == 2


@pytest.mark.parametrize("damage", [lambda b: b"\x80\x02garbage" * 100, lambda b: b[:len(b) // 3], lambda b: None])
def test_damaged_weights_of_the_next_parent_are_named_with_the_generation_to_start_from(finished_run, tmp_path, damage):
    run = copy_of(finished_run, tmp_path)
    weights = run / "gen-01" / "offspring-0.pt"
    damaged = damage(weights.read_bytes())
    if damaged is None:
        weights.unlink()
    else:
        weights.write_bytes(damaged)
    one_clear_line(host_evolve("--resume", str(run), "--generations", "2"),
                   f"{weights}, generation 1's weights (the next parent), is damaged", "restore it from a backup",
                   f"--ancestor-from {run / 'gen-00' / 'offspring-0.pt'}")
    assert not (run / "gen-02").exists()


def test_a_damaged_image_cache_is_decoded_again(shapes, tmp_path):
    split, spec = scan_folder(shapes), PreprocessSpec.square(32)
    first = cache_split(split.train, spec, tmp_path, "train")
    expected, paths = np.array(first.images), first.paths  # in memory: the file under the map is damaged below
    del first
    manifest = next(tmp_path.glob("train-*.json"))
    images = manifest.with_suffix(".u8")
    for damage in (lambda: images.write_bytes(images.read_bytes()[:1000]),  # cut short
                   lambda: manifest.write_text("{not json"), lambda: manifest.write_text("[1, 2]")):
        damage()
        again = cache_split(split.train, spec, tmp_path, "train")
        assert np.array_equal(np.array(again.images), expected) and again.paths == paths
        del again


def test_an_image_cache_stopped_while_decoding_leaves_no_temporary_file(shapes, tmp_path, monkeypatch):
    import host.evolve.data
    split, spec, calls = scan_folder(shapes), PreprocessSpec.square(32), []
    real = host.evolve.data._decode

    def stopped_at_the_third(path, spec):  # as a Ctrl-C or SIGTERM lands while images are decoded
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, spec)
    monkeypatch.setattr(host.evolve.data, "_decode", stopped_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        cache_split(split.train, spec, tmp_path, "train", threads=1)
    assert list(tmp_path.iterdir()) == []  # found by the kill trials: a SIGTERM left train-...u8.partial


# -- no room to write ----------------------------------------------------------------------------
def test_a_file_size_limit_is_one_line_and_resume_completes_once_it_is_raised(shapes, tmp_path):
    run = tmp_path / "run"
    # 1 MB: the cache and the lineage fit, the ancestor's 2.9 MB weights do not (EFBIG, as `ulimit -f 1000`)
    result = host_evolve(*flags(**dict(TINY, generations=1), data=shapes, out=run), limit_bytes=1_000_000)
    one_clear_line(result, f"cannot write {run / 'gen-00' / 'offspring-0.pt'}: a file-size limit was reached",
                   "raise the limit (ulimit -f unlimited)", f"host-evolve --resume {run} (nothing finished is lost)")
    assert partials(run) == []  # the temporary file went with the failed write
    resumed = host_evolve("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [g["generation"] for g in json.loads((run / "summary.json").read_text())["generations"]] == [0, 1]


def test_no_room_before_the_run_began_says_to_run_the_command_again(shapes, tmp_path):
    result = host_evolve(*flags(**TINY, data=shapes, out=tmp_path / "run"), limit_bytes=100)  # not even config.json
    one_clear_line(result, f"cannot write {tmp_path / 'run' / 'lineage.sqlite'}: a disk I/O error",
                   "under a file-size limit of 100 bytes (ulimit -f)", "raise the limit (ulimit -f unlimited)",
                   "then run the same command again")


def test_write_failure_names_the_file_the_cause_and_the_fix(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    try:  # a real ENOSPC: /dev/full is a disk that is always full
        with open("/dev/full", "wb") as full:
            full.write(b"x" * 100_000)
    except OSError as error:
        no_space = error
    assert no_space.errno == errno.ENOSPC
    no_space.filename = str(run / "gen-03" / "model.onnx")  # as contract.files.atomic_write names it
    assert write_failure(no_space, run) == (f"cannot write {run}/gen-03/model.onnx: no space left on its disk; free "
                                            "space there, then run the same command again (the run had not started)")
    (run / "config.json").write_text("{}")
    assert write_failure(no_space, run).endswith(f"then host-evolve --resume {run} (nothing finished is lost)")
    assert f"then /venv/bin/host-evolve --resume {run} " in write_failure(no_space, run, "/venv/bin/host-evolve")
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full_database:  # SQLite's own SQLITE_FULL
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert write_failure(full_database.value, run).startswith(f"cannot write {run / 'lineage.sqlite'}: no space left")
    assert write_failure(OSError(errno.EACCES, "Permission denied"), run) is None  # not a matter of room
    assert write_failure(ValueError("a bug"), run) is None


def test_atomic_write_names_the_file_meant_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "big.bin"
    pid = os.fork()
    if pid == 0:  # a child with a file-size limit: EFBIG while writing
        code = 1
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            atomic_write(target, b"x" * 100_000)
        except OSError as error:
            code = 0 if (error.errno, error.filename) == (errno.EFBIG, str(target)) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(tmp_path.iterdir()) == []


# -- temporary files and signals -----------------------------------------------------------------
def test_temporary_files_a_killed_run_left_are_removed_on_resume_and_nothing_else(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    left = [run / "gen-01" / ".offspring-0.pt.k2j3h4g5.partial", run / ".checkpoint.pt.a1b2c3d4.partial",
            run / ".summary.json.zz9y8x7w.partial", run / "cache" / "train-32x32-0123456789abcdef.u8.partial",
            run / "offspring-speed.onnx"]
    for path in left:
        path.write_bytes(b"\0" * 1000)
    mine = [run / "notes.partial", run / "gen-01" / "mine.txt"]  # not host-evolve's temporary files: kept
    for path in mine:
        path.write_text("mine")
    resumed = host_evolve("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "removed 5 temporary file(s)" in resumed.stderr
    assert [p for p in left if p.exists()] == [] and all(p.read_text() == "mine" for p in mine)


def test_a_new_run_in_a_folder_a_killed_start_left_removes_its_temporary_files(shapes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "lineage.sqlite").write_bytes(b"")  # what a host-evolve killed before its config.json leaves
    (out / ".config.json.q1w2e3r4.partial").write_text("{")
    evolve(resolve({}, dict(TINY, data=str(shapes), out=str(out))))
    assert partials(out) == []


def test_sigterm_stops_like_ctrl_c_and_resume_continues(shapes, tmp_path):
    run = tmp_path / "run"
    process = host_evolve(*flags(**dict(TINY, ancestor_epochs=40, batch_size=4), data=shapes, out=run), wait=False)
    deadline = time.monotonic() + 300  # a bound for a stuck run only: the run is stopped as soon as it trains
    while not (run / "checkpoint.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]  # 128 + SIGTERM, as Ctrl-C is 128 + SIGINT
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("host-evolve: stopped by SIGTERM; continue with: ") and last.endswith(
        f"host-evolve --resume {run}"), last
    assert partials(run) == [] and (run / "host-evolve.lock").read_text() == ""  # lock released, nothing half written
    done = load_checkpoint(run / "checkpoint.pt")["epochs_done"]  # the last finished epoch
    assert 1 <= done < 40
    resumed = host_evolve("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming generation 0 offspring 0 after epoch {done}" in resumed.stderr
