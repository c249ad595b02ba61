"""lineage.sqlite: the fps columns say which fps they hold, and runs of an older version are migrated."""
import sqlite3

from host.run.lineage import Lineage

GENERATION = {"generation": 0, "parent": None, "offspring": 0, "genome": "{}", "params": 10, "size_bytes": 40,
              "macs": 100, "top1": 0.5, "top5": 0.9, "train_seconds": 1.0, "env_factor": None, "lambda": None,
              "onnx": "gen-00/model.onnx", "sha256": "ab" * 32, "weights": "gen-00/offspring-0.pt",
              "labels": "gen-00/labels.txt", "card": "gen-00/card.json"}


def test_a_local_steering_fps_is_also_the_local_fps_and_a_device_one_is_not(tmp_path):
    lineage = Lineage(tmp_path / "lineage.sqlite")
    lineage.add_generation(GENERATION)
    lineage.add_generation(dict(GENERATION, generation=1, sha256="cd" * 32))
    lineage.set_steering_fps(0, 250.0, "local")
    lineage.set_steering_fps(1, 40.0, "device:tx1")
    zero, one = lineage.generations()
    assert (zero["steering_fps"], zero["fps_source"], zero["local_fps"]) == (250.0, "local", 250.0)
    assert (one["steering_fps"], one["fps_source"], one["local_fps"]) == (40.0, "device:tx1", None)


def benchmark(fps, stable=True, batch=1):
    return {"stats": {"fps": fps, "frames": 10, "batch": batch, "stable": stable}}


def live(fps, paced):
    return {"stats": {"fps": fps, "frames": 100, "paced": paced}}


def test_device_fps_is_the_latest_benchmark_per_device_per_model(tmp_path):
    lineage = Lineage(tmp_path / "lineage.sqlite")
    lineage.add_generation(GENERATION)
    sha = GENERATION["sha256"]
    assert lineage.latest_device_fps("tx1", sha) is None
    lineage.add_device_report("tx1", 1, sha, "benchmark", 30.0, benchmark(30.0))
    lineage.add_device_report("nano", 1, sha, "benchmark", 20.0, benchmark(20.0))
    assert lineage.latest_device_fps("tx1", sha) == 30.0 and lineage.latest_device_fps("nano", sha) == 20.0
    assert lineage.device_fps() == {0: 20.0}  # any device's latest benchmark, for /generations and summary.json


def test_a_live_figure_never_overwrites_a_benchmark_nor_steers(tmp_path):
    """A video played in real time (15 fps) after device-agent's benchmark (160 img/s) of the same generation:
    both are kept, each under its kind of measurement, and steering and device_fps read the benchmark."""
    lineage = Lineage(tmp_path / "lineage.sqlite")
    lineage.add_generation(GENERATION)
    sha = GENERATION["sha256"]
    lineage.add_device_report("tx1", 1, sha, "benchmark", 160.0, benchmark(160.0))
    lineage.add_device_report("tx1", 2, sha, "final", 15.0, live(15.0, paced=True))
    lineage.add_device_report("tx1", 3, sha, "final", 90.0, live(90.0, paced=False))
    lineage.add_device_report("tx1", 4, sha, "benchmark", 300.0, benchmark(300.0, batch=8))
    assert lineage.latest_device_fps("tx1", sha) == 160.0
    assert lineage.device_fps() == {0: 160.0}
    figures = {(f["device_id"], f["measurement"]): f["fps"] for f in lineage.device_figures()[0]}
    assert figures == {("tx1", "benchmark-b1"): 160.0, ("tx1", "live-paced"): 15.0, ("tx1", "live-unpaced"): 90.0,
                       ("tx1", "benchmark-b8"): 300.0}
    lineage.add_device_report("nano", 1, sha, "final", 12.0, {})  # a device-serve that did not say: "live"
    assert lineage.device_fps() == {0: 160.0} and lineage.latest_device_fps("nano", sha) is None
    assert ("nano", "live") in {(f["device_id"], f["measurement"]) for f in lineage.device_figures()[0]}


def test_an_unstable_benchmark_never_replaces_a_stable_one_and_says_so(tmp_path):
    lineage = Lineage(tmp_path / "lineage.sqlite")
    lineage.add_generation(GENERATION)
    sha = GENERATION["sha256"]
    lineage.add_device_report("tx1", 1, sha, "benchmark", 12.5, benchmark(12.5, stable=False))
    assert lineage.latest_device_figure("tx1", sha)["stable"] is False  # the only figure: used, and marked
    assert lineage.device_figures()[0][0]["stable"] is False
    lineage.add_device_report("tx1", 2, sha, "benchmark", 2100.0, benchmark(2100.0))
    lineage.add_device_report("tx1", 3, sha, "benchmark", 40.0, benchmark(40.0, stable=False))
    assert lineage.latest_device_fps("tx1", sha) == 2100.0 and lineage.device_fps() == {0: 2100.0}
    assert [(f["fps"], f["stable"]) for f in lineage.device_figures()[0]] == [(2100.0, True)]


def test_an_older_runs_measured_fps_column_becomes_steering_fps(tmp_path):
    path = tmp_path / "lineage.sqlite"
    Lineage(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE generations RENAME COLUMN steering_fps TO measured_fps")  # as an older version made it
    db.execute("INSERT INTO generations (generation, offspring, genome, params, size_bytes, macs, top1, top5, "
               "train_seconds, onnx, sha256, weights, labels, card, measured_fps, created_at) VALUES "
               "(0, 0, '{}', 1, 4, 1, 0.5, 0.9, 1.0, 'a', 'b', 'c', 'd', 'e', 123.0, 0)")
    db.commit()
    db.close()
    lineage = Lineage(path)
    assert lineage.generation(0)["steering_fps"] == 123.0 and "measured_fps" not in lineage.generation(0)
