"""Claiming a run folder (host-evolve --out / --resume): nothing of a user's is overwritten, a run is
continued only by --resume and with its own config, one writer per run, and a refused start leaves nothing."""
import fcntl
import json

import pytest

from tests.host.commands import flags, host_evolve, one_clear_line
from host.evolve.config import resolve
from tests.host.settings import MECHANICS
from host.errors import HostError
from host.evolve.evolution import evolve

SHAPES = (8, 36)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

# the smallest real run: the ancestor only, untrained (ancestor_epochs 0), evaluated and exported
TINY = dict(MECHANICS)  # tests/host/settings.py: mechanics, not learning, acceptance off


@pytest.fixture(scope="module")
def finished_run(shapes, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    evolve(resolve({}, dict(TINY, data=str(shapes), out=str(run))))
    return run


def test_a_folder_of_someone_elses_files_is_refused_and_left_as_it_was(shapes, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json.bak").write_text("my notes")
    (folder / "report.png").write_bytes(b"my picture")
    result = host_evolve(*flags(**TINY, data=shapes, out=folder))
    one_clear_line(result, f"--out {folder} holds files that are not a host-evolve run", "new or empty")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json.bak", "report.png"]
    assert (folder / "report.png").read_bytes() == b"my picture"


def test_an_existing_run_is_continued_only_by_resume_and_a_different_config_shows_the_diff(finished_run, shapes):
    before = (finished_run / "config.json").read_text()
    result = host_evolve(*flags(**dict(TINY, image_size=48), data=shapes, out=finished_run))
    one_clear_line(result, f"--out {finished_run} is a run already", f"--resume {finished_run}",
                   "image_size: 32 -> 48")
    with pytest.raises(HostError, match="is a run already"):  # the same config: still only by --resume
        evolve(resolve({}, dict(TINY, data=str(shapes), out=str(finished_run))))
    with pytest.raises(HostError, match=r"--resume .*differs from the run's \(image_size: 32 -> 48\)"):
        evolve(resolve({}, dict(TINY, image_size=48, data=str(shapes), out=str(finished_run))), resume=True)
    assert (finished_run / "config.json").read_text() == before


def test_one_writer_per_run_a_second_is_refused_clearly(finished_run):
    with open(finished_run / "host-evolve.lock", "a+") as lock:  # as a running host-evolve holds it
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write("host-evolve pid 4242\n")
        lock.flush()
        result = host_evolve("--resume", str(finished_run))
        one_clear_line(result, f"{finished_run} is being written by host-evolve pid 4242", "one host-evolve per run")
    after = host_evolve("--resume", str(finished_run))  # the holder is gone (a killed one drops it too)
    assert after.returncode == 0, after.stderr[-2000:]


def test_a_refused_data_folder_leaves_no_run_behind(tmp_path):
    data = tmp_path / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        for index in range(3):
            (data / name / f"broken-{index}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    result = host_evolve(*flags(**TINY, data=data, out=out))
    one_clear_line(result, "no decodable images in the train split")
    assert not out.exists()
    out.mkdir()  # an empty folder given: it stays, empty
    one_clear_line(host_evolve(*flags(**TINY, data=data, out=out)), "no decodable images")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("make,args,phrases", [
    (lambda d: d.write_bytes("generations = 2\n# caf\xe9\n".encode("latin-1")), ["--config", "{f}"],
     ["is not UTF-8 text", "save it as UTF-8"]),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{not json")), ["--resume", "{f}"],
     ["config.json is not readable JSON", "lineage.sqlite keeps a copy"]),
    (lambda d: (d.mkdir(), (d / "config.json").write_text(json.dumps({"lr": "fast"}))), ["--resume", "{f}"],
     ["config key lr = 'fast' should be a float"]),
    (lambda d: None, ["--data", "x", "--lr", "-1"], ["lr = -1.0 must be in (0, 1000]"]),
    (lambda d: None, ["--data", "x", "--lr", "nan"], ["lr = nan must be a finite number"]),
    (lambda d: None, ["--data", "x", "--image-size", "100000"], ["image_size = 100000 must be in [32, 1024]"]),
    (lambda d: d.write_text("a file"), ["--data", "{shapes}", "--out", "{f}"], ["is a file, not a folder"]),
    (lambda d: d.write_text("a file"), ["--data", "{shapes}", "--out", "{f}/run"], ["cannot write there"]),
    (lambda d: d.write_text("a file"), ["--data", "{f}"], ["is a file, not a folder"]),
    (lambda d: d.write_bytes(b"not weights"), ["--data", "{shapes}", "--out", "{f}.run", "--pretrained", "{f}"],
     ["is not a readable torch state_dict", "squeezenet1_1"]),
])
def test_bad_input_is_one_clear_line(shapes, tmp_path, make, args, phrases):
    target = tmp_path / "given"
    make(target)
    result = host_evolve(*flags(**TINY), *[a.format(f=target, shapes=shapes) for a in args])
    one_clear_line(result, *phrases)
    assert not target.with_name("given.run").exists()  # refused before anything was written


def test_a_run_killed_before_its_config_starts_again_with_the_same_command(shapes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "host-evolve.lock").write_text("")  # what a host-evolve killed in its first moments leaves
    (out / "lineage.sqlite").write_bytes(b"")
    (out / "lineage.sqlite-journal").write_bytes(b"")  # killed inside SQLite's first transaction
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(out))))
    assert [g["generation"] for g in summary["generations"]] == [0]
