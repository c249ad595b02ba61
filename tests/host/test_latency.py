"""Hardware in the loop: the R rule, local speed steering, and a device-agent steering a live evolution."""
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.evolve.config import resolve
from host.errors import HostError
from host.evolve.evolution import evolve
from host.evolve.latency import parse_latency_source
from host.evolve.steering import next_env_factor

SHAPES = (30, 36)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

TINY = {"image_size": 32, "epochs": 1, "ancestor_epochs": 1, "round_to": 4, "min_filters": 2, "batch_size": 32,
        "lr": 0.01, "crop_scale": 0.7, "latency_seconds": 0.3,
        "max_drop": 1.0, "distill_weight": 0.0}  # mechanics, not learning: acceptance off


def test_latency_sources_are_parsed_and_bad_ones_named():
    assert parse_latency_source("local") == ("local", None)
    assert parse_latency_source("device:tx1-lab") == ("device", "tx1-lab")
    with pytest.raises(HostError, match="device:ID"):
        parse_latency_source("gpu")


def test_local_target_met_stops_the_run_and_keeps_what_was_bred(shapes, tmp_path):
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=3,
                                      target_fps=1.0, latency_from="local")))
    assert [g["generation"] for g in summary["generations"]] == [0]
    assert summary["stopped"].startswith("target 1 fps met by generation 0")
    assert summary["generations"][0]["steering_fps"] > 1 and summary["generations"][0]["fps_source"] == "local"


def fps_by_file_size(onnx_path, seconds):
    """A measured-fps stand-in that does not depend on how fast or busy this machine is: fps inversely
    proportional to the real exported file's size (real timing is bench/steering.py's job)."""
    return 2e11 / Path(onnx_path).stat().st_size


def test_local_speed_steers_r_generation_by_generation(shapes, tmp_path):
    target, floor, mild = 1e6, 0.05, 0.99
    run = tmp_path / "run"
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(run), generations=2, target_fps=target,
                                      env_floor=floor, env_factor=mild)), measure_fps=fps_by_file_size)
    gens = summary["generations"]
    assert len(gens) == 3 and summary["stopped"] is None
    for g in gens:  # gen 0 measured alone, the others side by side with it: the ratio is exact here
        assert g["steering_fps"] == pytest.approx(fps_by_file_size(run / g["onnx"], 0)) == g["local_fps"]
        assert g["fps_source"] == "local"
    for parent, child in zip(gens, gens[1:]):
        assert child["env_factor"] == pytest.approx(next_env_factor(parent["steering_fps"], target, floor, mild))
        assert floor < child["env_factor"] < mild  # the measured fps, not a bound, chose R


def test_top1_floor_stops_the_run(shapes, tmp_path):
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=3,
                                      top1_floor=0.999)))
    assert len(summary["generations"]) == 1 and "fell below the floor" in summary["stopped"]


@pytest.mark.slow
def test_a_following_device_agent_steers_host_evolve_through_host_serve(shapes, tmp_path):
    from device.agent import main as device_agent
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer

    run, target, floor, mild = tmp_path / "run", 1e6, 0.05, 0.99
    config = tmp_path / "evolve.toml"
    config.write_text(f"latency_timeout = 120.0\nenv_floor = {floor}\nenv_factor = {mild}\n")
    evolution = subprocess.Popen(
        [sys.executable, "-m", "host.evolve.cli", "--config", str(config), "--data", str(shapes), "--out", str(run),
         "--generations", "2", "--target-fps", str(target), "--latency-from", "device:bench-box",
         *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "latency_seconds"]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "lineage.sqlite").exists() and time.time() < deadline:
            time.sleep(0.1)
        server = BackgroundServer(create_app(run, "s3cret")).start()
        cache = tmp_path / "agent-cache"
        try:
            while evolution.poll() is None and time.time() < deadline:
                code = device_agent(["--follow", server.url, "--once", "--device-id", "bench-box", "--token", "s3cret",
                                     "--backend", "onnxruntime", "--seconds", "0.3", "--cache-dir", str(cache)])
                assert code in (0, 1)
                time.sleep(0.3)
        finally:
            server.stop()
        output = evolution.communicate(timeout=60)[0]
    finally:
        if evolution.poll() is None:
            evolution.kill()
    assert evolution.returncode == 0, output[-3000:]
    db = sqlite3.connect(run / "lineage.sqlite")
    db.row_factory = sqlite3.Row
    gens = [dict(r) for r in db.execute("SELECT * FROM generations ORDER BY generation")]
    reports = {r["generation"]: r["fps"] for r in db.execute(
        "SELECT generation, fps FROM device_reports WHERE device_id = 'bench-box' AND kind = 'benchmark'")}
    assert [g["generation"] for g in gens] == [0, 1, 2]
    for g in gens:  # the fps that steered each generation is the one the device reported
        assert g["fps_source"] == "device:bench-box" and g["steering_fps"] == reports[g["generation"]] > 0
    for parent, child in zip(gens, gens[1:]):
        assert child["env_factor"] == pytest.approx(next_env_factor(parent["steering_fps"], target, floor, mild))
    summary = json.loads((run / "summary.json").read_text())
    assert all(g["device_fps"] for g in summary["generations"])


def test_fixed_env_measures_and_stops_but_keeps_r(shapes, tmp_path):
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=1,
                                      target_fps=1e6, env_factor=0.9, steer=False)))
    gens = summary["generations"]
    assert gens[1]["env_factor"] == 0.9 and all(g["steering_fps"] > 0 for g in gens)


def test_fps_weight_measures_every_offspring_and_weighs_speed_in_fitness(shapes, tmp_path):
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=1, offspring=2,
                                      target_fps=1e6, fps_weight=0.5)))
    import sqlite3
    rows = sqlite3.connect(tmp_path / "run" / "lineage.sqlite").execute(
        "SELECT offspring, top1, local_fps, params FROM offspring WHERE generation = 1 ORDER BY offspring").fetchall()
    assert len(rows) == 2 and all(fps > 0 for _, _, fps, _ in rows)
    fittest = max(rows, key=lambda r: (r[1] + 0.5 * min(1.0, r[2] / 1e6), -r[3]))
    assert summary["generations"][1]["offspring"] == fittest[0]


def test_size_budget_lands_on_the_target_size(shapes, tmp_path):
    from host.evolve.genome import Genome
    ancestor = Genome.squeezenet1_1(4).size_bytes
    target_mb = ancestor * 0.6 / 1e6
    summary = evolve(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=3,
                                      target_mb=target_mb, env_floor=0.3)))
    gens = summary["generations"]
    assert gens[1]["env_factor"] == pytest.approx((0.6) ** (1 / 3))
    assert gens[-1]["size_mb"] == pytest.approx(target_mb, rel=0.12)  # sampling noise: a few % per generation


def test_speed_ratios_alternate_reference_and_model_and_take_the_median(tmp_path):
    from host.evolve.latency import local_fps_against, speed_ratios
    calls = []
    speeds = iter([100, 200, 50, 200, 100, 150])  # reference, model, reference, model, ...: ratios 2, 4, 1.5

    def meter(path, seconds):
        calls.append((path, seconds))
        return next(speeds)

    assert speed_ratios("ref.onnx", "gen.onnx", 1.0, 3, meter) == [2.0, 4.0, 1.5]
    assert [p for p, _ in calls] == ["ref.onnx", "gen.onnx"] * 3 and {s for _, s in calls} == {1.0}
    speeds = iter([100, 200, 50, 200, 100, 150])
    calls.clear()
    assert local_fps_against("ref.onnx", 300.0, "gen.onnx", 2.0, 3, meter) == 600.0  # 300 x median 2
    assert {s for _, s in calls} == {1.0}  # the time split between the two
