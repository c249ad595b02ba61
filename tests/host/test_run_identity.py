"""A run's identity: its paths are stored absolute (a run means the same files from any directory), it trains on
one dataset (a resume on data whose classes or files differ is refused, naming them), and its folder is never
inside its data."""
import json
import shutil
import sqlite3

import pytest

from tests.host.commands import flags, host_evolve, one_clear_line
from host.evolve.config import resolve, run_paths
from host.evolve.data import DataIdentity, scan_folder
from tests.host.settings import MECHANICS
from host.errors import HostError
from host.evolve.evolution import evolve

SHAPES = (16, 36)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

TINY = dict(MECHANICS)  # tests/host/settings.py: mechanics, not learning, acceptance off


def copy_shapes(source, target, first=0, count=8):
    """Two image folders with the same classes: ``count`` images per class from ``first`` on."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[first:first + count]:
            shutil.copy(image, target / folder.name / image.name)
    return target


def dump(run):
    with sqlite3.connect(run / "lineage.sqlite") as db:
        return list(db.iterdump())


def cache_sets(run):
    return sorted(p.name for p in (run / "cache").glob("*.json"))


def test_a_relative_data_path_is_stored_absolute_and_resume_from_anywhere_uses_the_runs_own_data(shapes, tmp_path):
    first, other = tmp_path / "a", tmp_path / "b"
    copy_shapes(shapes, first / "data", 0)
    copy_shapes(shapes, other / "data", 8)  # another ./data: the same classes, other images
    run = tmp_path / "run"
    started = host_evolve(*flags(**TINY, data="data", out="../run"), cwd=first)
    assert started.returncode == 0, started.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"] == str(first / "data") and saved["out"] == str(run)
    before = cache_sets(run)
    for cwd in (tmp_path, other):  # a directory without ./data, and one with another ./data
        resumed = host_evolve("--resume", str(run), "--generations", "1", cwd=cwd)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert cache_sets(run) == before  # the run's images were never swapped for ./data's: one cache set
    db = sqlite3.connect(run / "lineage.sqlite")
    assert [r[0] for r in db.execute("SELECT generation FROM generations ORDER BY 1")] == [0, 1]
    assert db.execute("SELECT root FROM dataset").fetchone()[0] == str(first / "data")


def test_resume_refuses_data_whose_files_or_classes_changed_naming_them(shapes, tmp_path):
    data = copy_shapes(shapes, tmp_path / "data", 0)
    run = tmp_path / "run"
    evolve(resolve({}, dict(TINY, data=str(data), out=str(run))))
    before, lineage = cache_sets(run), dump(run)

    (data / "circle" / "0000.jpg").unlink()  # a file gone, another one new
    shutil.copy(shapes / "circle" / "0010.jpg", data / "circle" / "0010.jpg")
    last = one_clear_line(host_evolve("--resume", str(run)), f"{data} holds other data than this run was trained on",
                          "1 file missing: circle/0000.jpg", "1 file new: circle/0010.jpg",
                          f"put the run's data back in {data}")
    assert "classes" not in last
    shutil.move(data / "circle" / "0010.jpg", data / "circle" / "0000.jpg")  # put back: the same names again

    shutil.copytree(data / "cross", data / "zebra")  # a class more
    one_clear_line(host_evolve("--resume", str(run)), "1 class new: zebra", "8 files new: zebra/0000.jpg")
    shutil.rmtree(data / "zebra")
    shutil.rmtree(data / "square")  # a class fewer
    one_clear_line(host_evolve("--resume", str(run)), "1 class missing: square", "8 files missing: square/0000.jpg")
    assert cache_sets(run) == before  # refused before anything was decoded
    assert dump(run) == lineage

    copy_shapes(shapes, tmp_path / "put-back", 0)
    shutil.move(tmp_path / "put-back" / "square", data / "square")
    resumed = host_evolve("--resume", str(run), "--generations", "1")  # the run's data again: it continues
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_identity_names_what_differs_and_ignores_contents():
    run = DataIdentity(("cat", "dog"), ("cat/1.jpg", "cat/2.jpg", "dog/1.jpg"))
    assert run.differences(run) == []
    assert run.differences(DataIdentity(("dog", "cat"), run.files)) == ["classes in another order (dog, cat, ...)"]
    now = DataIdentity(("cat", "dog", "eel"), ("cat/1.jpg", "dog/1.jpg", "eel/1.jpg", "eel/2.jpg"))
    assert run.differences(now, shown=1) == ["1 class new: eel", "1 file missing: cat/2.jpg",
                                             "2 files new: eel/1.jpg, ..."]
    assert DataIdentity.from_record(run.to_record()) == run and run.to_record()["sha256"] != now.to_record()["sha256"]


def test_the_identity_is_the_same_for_the_same_tree_in_another_place(shapes, tmp_path):
    moved = shutil.copytree(shapes, tmp_path / "elsewhere")
    assert DataIdentity.of(scan_folder(moved)) == DataIdentity.of(scan_folder(shapes))


def test_a_missing_data_folder_on_resume_says_how_to_point_the_run_at_its_new_place(shapes, tmp_path):
    data = copy_shapes(shapes, tmp_path / "data", 0)
    run = tmp_path / "run"
    evolve(resolve({}, dict(TINY, data=str(data), out=str(run))))
    moved = tmp_path / "moved"
    data.rename(moved)
    one_clear_line(host_evolve("--resume", str(run)), f"the run's data folder {data} is not there any more",
                   f'set "data" in {run / "config.json"} to its new place')
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(saved, data=str(moved))))  # the fix the line gives
    resumed = host_evolve("--resume", str(run), "--generations", "1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.parametrize("out", ["{data}/run", "{data}", "{data}/circle/../run", "{link}/run"])
def test_an_out_inside_the_data_is_refused_and_nothing_written(shapes, tmp_path, out):
    data = copy_shapes(shapes, tmp_path / "data", 0)
    (tmp_path / "link").symlink_to(data)
    before = sorted(p.name for p in data.rglob("*"))
    result = host_evolve(*flags(**TINY, data=data, out=out.format(data=data, link=tmp_path / "link")))
    one_clear_line(result, "is inside --data", f"give an --out outside {data}")
    assert sorted(p.name for p in data.rglob("*")) == before
    with pytest.raises(HostError, match="is inside --data"):
        resolve({}, {"data": str(data), "out": str(data / "x" / "run")})


def test_a_run_folder_moved_whole_takes_the_paths_inside_it_along():
    saved = {"data": "/old/run/demo-data", "out": "/old/run", "pretrained": "/weights/s.pth", "cache_dir": ""}
    assert run_paths(saved, "/new/place") == {"data": "/new/place/demo-data", "out": "/new/place",
                                             "pretrained": "/weights/s.pth", "cache_dir": ""}


def test_a_run_of_an_older_version_with_a_relative_data_path_resumes_from_its_directory(shapes, tmp_path):
    data = copy_shapes(shapes, tmp_path / "data", 0)
    run = tmp_path / "run"
    evolve(resolve({}, dict(TINY, data=str(data), out=str(run))))
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(saved, data="data", out="run")))  # as it was stored before
    with sqlite3.connect(run / "lineage.sqlite") as db:
        db.execute("DELETE FROM dataset")
    resumed = host_evolve("--resume", "run", "--generations", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "relative paths" in resumed.stderr
    assert json.loads((run / "config.json").read_text())["data"] == str(data)  # absolute from now on
    assert sqlite3.connect(run / "lineage.sqlite").execute("SELECT root FROM dataset").fetchone()[0] == str(data)
