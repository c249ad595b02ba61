"""--budget latency: R applied to a latency table's prediction, each layer's cut allocated by its latency price
over its sensitivity (host/evolve/latency_cost.py), widths kept on the table's block; pure logic, then real
host-evolve runs and processes."""
import json
import math

import numpy as np
import pytest

from contract import latency_table as lt
from host.errors import HostError
from host.evolve.config import resolve
from host.evolve.genome import Genome
from host.evolve.latency_cost import LatencyCost, allocation_scales, probe_cut, resolve_table
from host.evolve.synthesis import expected_offspring_cost, sample_offspring, solve_lambda
from tests.contract.test_latency_table import linear_table
from tests.host.commands import flags, host_evolve, one_clear_line
from tests.host.settings import MECHANICS

SHAPES = (12, 36)


def test_exponent_zero_leaves_the_heredity_alone():
    prices = {"conv1": 1.0, "fire2.squeeze": 2.0, "fire2.expand3x3": 4.0}
    assert allocation_scales(prices, {"conv1": 1.0, "fire2.squeeze": 1.0, "fire2.expand3x3": 1.0}, 0.0) == \
        {"conv1": 1.0, "fire2.squeeze": 1.0, "fire2.expand3x3": 1.0}


def test_layers_that_buy_more_time_per_damage_are_cut_more_and_squeezes_are_compared_with_squeezes():
    prices = {"conv1": 4.0, "fire2.expand1x1": 1.0, "fire2.expand3x3": 1.0, "fire2.squeeze": 0.01,
              "fire3.squeeze": 0.04}
    damage = {name: 1.0 for name in prices}
    scales = allocation_scales(prices, damage, 1.0)
    assert scales["conv1"] < 1.0 < scales["fire2.expand1x1"] == scales["fire2.expand3x3"]
    assert scales["conv1"] == pytest.approx(4 ** (1 / 3) / 4)  # v = 4 against the geometric mean (4 * 1 * 1) ** (1/3)
    # the squeezes' tiny prices are not held against the expands': within their group, geometric mean 0.02
    assert scales["fire2.squeeze"] == pytest.approx(2.0) and scales["fire3.squeeze"] == pytest.approx(0.5)
    # a layer whose cut hurts more is cut less, at the same price
    hurt = allocation_scales(prices, dict(damage, conv1=8.0), 1.0)
    assert hurt["conv1"] > scales["conv1"]


def test_factors_are_clipped_and_unmeasured_layers_keep_one():
    prices = {"conv1": 1000.0, "fire2.expand1x1": 1.0, "fire2.expand3x3": 1.0, "fire4.expand3x3": 1.0}
    scales = allocation_scales(prices, {"conv1": 1.0, "fire2.expand1x1": 1.0, "fire2.expand3x3": 1.0}, 2.0)
    assert scales["conv1"] == pytest.approx(0.25) and scales["fire4.expand3x3"] == 1.0
    assert allocation_scales({"conv1": 1.0}, {"conv1": math.inf}, 1.0) == {"conv1": 1.0}


def test_the_sensitivity_probe_cuts_the_weakest_quarter_on_the_grid():
    strengths = np.arange(64, dtype=float)  # filter i has strength i
    kept = probe_cut(strengths, 16, 4)
    assert len(kept) == 48 and kept.tolist() == list(range(16, 64))
    assert len(probe_cut(np.arange(16.0), 16, 4)) == 16  # cannot shrink on its grid: not probed
    assert len(probe_cut(np.arange(32.0), 16, 4)) == 16  # else at least one grid step down
    assert len(probe_cut(np.arange(5.0), 1, 4)) == 4  # never below min_filters
    assert len(probe_cut(np.ones(1), 1, 1)) == 1


def ancestor_strengths(seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.random(width) for name, width in Genome.squeezenet1_1(10).layer_widths().items()}


def test_lambda_meets_the_latency_budget_in_expectation_and_draws_stay_on_the_grid():
    parent = Genome.squeezenet1_1(10).to_dict()
    cost = LatencyCost(linear_table(parent, 112, 16), "test")
    strengths = ancestor_strengths()
    parent_ms = cost.of_widths({name: float(len(s)) for name, s in strengths.items()})
    for env_factor in (0.9, 0.6):
        lam = solve_lambda(strengths, 10, env_factor, kind="latency", image_size=112, min_filters=4, round_to=16,
                           cost_of=cost.of_widths)
        expected = expected_offspring_cost(strengths, lam, 10, 112, "latency", 4, 16, None, cost.of_widths)
        assert expected == pytest.approx(env_factor * parent_ms, rel=2e-3)
    kept = sample_offspring(strengths, lam, np.random.default_rng(1), min_filters=4, round_to=16)
    widths = {name: len(index) for name, index in kept.items()}
    parent_widths = Genome.squeezenet1_1(10).layer_widths()
    assert all(w % 16 == 0 or w == parent_widths[name] for name, w in widths.items())


def test_the_allocation_moves_the_cut_to_the_priced_layer():
    """With conv1 priced high and every layer equally sensitive, the expected conv1 width falls further under
    the allocation than under the heredity alone, at the same budget."""
    from host.evolve.synthesis import expected_width, keep_probabilities
    parent = Genome.squeezenet1_1(10).to_dict()
    cost = LatencyCost(linear_table(parent, 112, 16), "test")
    strengths = ancestor_strengths()
    prices = cost.prices({name: float(len(s)) for name, s in strengths.items()})
    flat = {name: 1.0 for name in strengths}
    scales = allocation_scales(prices, flat, 1.0)
    widths = {}
    for label, s in (("heredity", None), ("allocation", scales)):
        lam = solve_lambda(strengths, 10, 0.7, kind="latency", image_size=112, min_filters=4, round_to=16,
                           scales=s, cost_of=cost.of_widths)
        widths[label] = expected_width(keep_probabilities(strengths["conv1"], lam * (s["conv1"] if s else 1)), 4, 16)
    assert widths["allocation"] < widths["heredity"]


def test_a_table_that_cannot_price_the_run_is_refused_by_name(tmp_path):
    parent = Genome.squeezenet1_1(4).to_dict()
    path = tmp_path / "table.json"
    path.write_text(json.dumps(linear_table(parent, 64, 4)))
    with pytest.raises(HostError, match="measured at 64 px and this run trains at 32 px"):
        resolve_table(str(path), parent, 32, 4, log=lambda m: None)
    bad = dict(linear_table(parent, 32, 4), check={"genomes": [{}], "max_error": 0.3, "within": False})
    path.write_text(json.dumps(bad))
    said = []
    resolve_table(str(path), parent, 32, 4, log=said.append)
    assert "predicted whole networks only within 30.0 %" in said[0]


def test_cost_exponent_and_a_latency_budget_are_one_or_the_other():
    with pytest.raises(HostError, match="give one of them"):
        resolve({}, dict(MECHANICS, data="x", budget="latency", cost_exponent=1.0))
    assert resolve({}, dict(MECHANICS, data="x", budget="latency")).latency_table == "local"


def test_an_evolution_on_a_latency_table_file(shapes, tmp_path):
    """A real run: the table kept in the run folder, the allocation and the predicted latency said, and every
    generation's predicted latency below its parent's."""
    parent = Genome.squeezenet1_1(4).to_dict()
    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps(linear_table(parent, 32, 4)))
    run = tmp_path / "run"
    result = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=run, generations=2, budget="latency",
                                       latency_table=table_path, env_factor=0.7)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "latency-table.json").read_text())["layers"] == \
        json.loads(table_path.read_text())["layers"]
    out = result.stdout + result.stderr
    assert out.count("allocation by latency price / sensitivity") == 2
    assert out.count("predicted batch-1 latency") == 2
    table = lt.load_table(str(table_path))
    summary = json.loads((run / "summary.json").read_text())
    predicted = [lt.predict_ms(table, Genome.from_dict(json.loads(g["genome"]) if isinstance(g["genome"], str)
                                                       else g["genome"]).layer_widths())
                 for g in summary["generations"]]
    assert predicted[0] > predicted[1] > predicted[2]
    config = json.loads((run / "config.json").read_text())
    assert config["budget"] == "latency" and config["latency_table"] == str(table_path)


def test_round_to_off_the_tables_block_is_refused_in_one_line(shapes, tmp_path):
    parent = Genome.squeezenet1_1(4).to_dict()
    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps(dict(linear_table(parent, 32, 8), block=8)))
    result = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=tmp_path / "run", generations=1, budget="latency",
                                       latency_table=table_path)))
    one_clear_line(result, "--round-to 4", "block of 8", "give --round-to 8")
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_device_measures_the_table_host_evolve_asks_for_through_host_serve(shapes, tmp_path):
    """host-evolve --latency-table device:ID asks; host-serve (real, loopback) lists the request behind the token;
    device-agent --once (real, ONNX Runtime) measures it and sends it; host-evolve reads it and steers by it."""
    import subprocess
    import sys
    import time
    from device.agent import main as device_agent
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer

    run = tmp_path / "run"
    settings = dict(MECHANICS, data=shapes, out=run, generations=1, budget="latency", latency_table="device:lab",
                    round_to=16, env_factor=0.8)
    config = tmp_path / "evolve.toml"
    config.write_text("latency_timeout = 240.0\n")
    evolution = subprocess.Popen([sys.executable, "-m", "host.evolve.cli", "--config", str(config), *flags(**settings)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agent_log = []
    try:
        deadline = time.time() + 240
        while not (run / "lineage.sqlite").exists() and time.time() < deadline and evolution.poll() is None:
            time.sleep(0.1)
        assert evolution.poll() is None, evolution.communicate()[0][-3000:]
        server = BackgroundServer(create_app(run, "s3cret")).start()
        try:
            import httpx
            assert httpx.get(server.url + "/latency-tables/requests").status_code == 401  # they name devices
            while evolution.poll() is None and time.time() < deadline:
                code = device_agent(["--follow", server.url, "--once", "--device-id", "lab", "--token", "s3cret",
                                     "--backend", "onnxruntime", "--seconds", "0.2",
                                     "--cache-dir", str(tmp_path / "agent")])
                assert code in (0, 1)
                listed = httpx.get(server.url + "/latency-tables/requests",
                                   headers={"Authorization": "Bearer s3cret"}).json()
                agent_log.append(listed)
                if listed and listed[0]["answered"]:
                    break
                time.sleep(0.3)
        finally:
            server.stop()
        output = evolution.communicate(timeout=240)[0]
    finally:
        if evolution.poll() is None:
            evolution.kill()
    assert evolution.returncode == 0, output[-3000:]
    request = agent_log[-1][0]
    assert request["device_id"] == "lab" and request["image_size"] == 32 and request["step"] == 16
    assert request["parent"] == Genome.squeezenet1_1(4).to_dict()
    kept = json.loads((run / "latency-table.json").read_text())
    assert kept["device_id"] == "lab" and kept["backend"] == "onnxruntime" and kept["image_size"] == 32
    assert "latency table device:lab" in output and "predicted batch-1 latency" in output
    assert "asked device lab for its latency table (request 1)" in output


def test_host_serve_refuses_a_table_that_does_not_answer_the_request(tmp_path):
    """POST /latency-tables/<id>: the token, a table that is one, of the device and widths asked for."""
    import httpx
    from host.run.lineage import Lineage
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer
    from tests.tiny_run import make_tiny_run

    run = tmp_path / "run"
    run.mkdir()
    make_tiny_run(run)
    parent = Genome.squeezenet1_1(3).to_dict()
    lineage = Lineage(run / "lineage.sqlite")
    request_id = lineage.request_latency_table("lab", 32, 16, parent)
    assert lineage.request_latency_table("lab", 32, 16, parent) == request_id  # asked once
    lineage.close()
    table = dict(linear_table(parent, 32, 16), device_id="lab")
    server = BackgroundServer(create_app(run, "s3cret")).start()
    auth = {"Authorization": "Bearer s3cret"}
    try:
        url = f"{server.url}/latency-tables/{request_id}"
        assert httpx.post(url, json=table).status_code == 401
        assert httpx.post(f"{server.url}/latency-tables/99", json=table, headers=auth).status_code == 404
        wrong = httpx.post(url, json=dict(table, device_id="other"), headers=auth)
        assert wrong.status_code == 422 and "device 'other'" in wrong.json()["detail"]
        other_size = httpx.post(url, json=dict(table, image_size=48), headers=auth)
        assert other_size.status_code == 422 and "image_size" in other_size.json()["detail"]
        assert httpx.post(url, json={"format": "x"}, headers=auth).status_code == 422
        assert httpx.post(url, content=b"[1, 2", headers=auth).status_code in (400, 422)
        stored = httpx.post(url, json=table, headers=auth)
        assert stored.status_code == 201 and stored.json()["stored"] is True
        listed = httpx.get(f"{server.url}/latency-tables/requests", headers=auth).json()
        assert listed == [{"id": request_id, "device_id": "lab", "image_size": 32, "step": 16, "parent": parent,
                           "answered": True}]
    finally:
        server.stop()
    assert Lineage.reader(run / "lineage.sqlite").latency_table_for(request_id)["device_id"] == "lab"


def test_a_run_stops_at_its_predicted_speed_up(shapes, tmp_path):
    """--target-speedup with --budget latency: R is chosen from the table's prediction and the run stops once
    a generation's predicted batch-1 speed-up over the ancestor is met."""
    parent = Genome.squeezenet1_1(4).to_dict()
    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps(linear_table(parent, 32, 4)))
    run = tmp_path / "run"
    result = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=run, generations=6, budget="latency",
                                       latency_table=table_path, target_speedup=1.3, env_floor=0.5)))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    table = lt.load_table(str(table_path))
    predicted = [lt.predict_ms(table, Genome.from_dict(json.loads(g["genome"]) if isinstance(g["genome"], str)
                                                       else g["genome"]).layer_widths())
                 for g in summary["generations"]]
    assert predicted[0] / predicted[-1] >= 1.3 and len(predicted) < 7  # met, and the run stopped there
    assert "predicted speed-up 1.3x met by generation" in result.stdout + result.stderr
