"""lineage.sqlite: the fps columns say which fps they hold, and runs of an older version are migrated."""
import sqlite3

from host.lineage import Lineage

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


def test_device_fps_is_the_latest_report_and_per_device_per_model(tmp_path):
    lineage = Lineage(tmp_path / "lineage.sqlite")
    lineage.add_generation(GENERATION)
    sha = GENERATION["sha256"]
    assert lineage.latest_device_fps("tx1", sha) is None
    lineage.add_device_report("tx1", 1, sha, "benchmark", 30.0, {})
    lineage.add_device_report("tx1", 2, sha, "periodic", 99.0, {})  # not a benchmark or final report
    lineage.add_device_report("nano", 1, sha, "final", 20.0, {})
    assert lineage.latest_device_fps("tx1", sha) == 30.0 and lineage.latest_device_fps("nano", sha) == 20.0
    assert lineage.device_fps() == {0: 20.0}  # any device's latest, for /generations and summary.json


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
