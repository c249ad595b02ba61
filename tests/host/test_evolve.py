"""The evolution end to end on real JPEGs: lineage, exports, summary, report; kill -9 and resume."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from host.evolve.config import resolve
from host.evolve.evolution import evolve
from contract.files import sha256_of_file as sha256_of
from host.evolve.genome import Genome

SHAPES = (60, 40)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

SETTINGS = {"image_size": 32, "epochs": 1, "ancestor_epochs": 2, "env_factor": 0.75, "round_to": 4,
            "min_filters": 2, "batch_size": 32, "lr": 0.01, "crop_scale": 0.7, "seed": 5,
            "max_drop": 1.0, "distill_weight": 0.0}  # mechanics, not learning: acceptance off


def flags(data, out, **extra):
    values = dict(SETTINGS, data=str(data), out=str(out), **extra)
    return [f"--{k.replace('_', '-')}={v}" for k, v in values.items()]


def test_a_lineage_of_smaller_generations_each_exported(shapes, tmp_path):
    run = tmp_path / "run"
    summary = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(run), generations=2, offspring=2,
                                      distill_weight=0.5)))
    gens = summary["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2] and [g["parent"] for g in gens] == [None, 0, 1]
    assert gens[0]["params"] > gens[1]["params"] > gens[2]["params"]
    for g in gens:
        assert sha256_of(run / g["onnx"]) == g["sha256"]
        card = json.loads((run / g["card"]).read_text())
        assert g["onnx_static_batch"] == g["onnx"].replace("model.onnx", "model-b1.onnx")
        assert sha256_of(run / g["onnx_static_batch"]) == card["static_batch"]["sha256"]
        assert Genome.from_dict(g["genome"]).params == g["params"] == g["size_bytes"] // 4
        assert (run / g["card"]).is_file() and (run / g["labels"]).read_text().split() == summary["labels"]
        assert 0 <= g["top1"] <= 1 and g["macs"] > 0
    assert set(summary["pareto"]) <= {0, 1, 2} and summary["pareto"]
    assert summary["preprocess"]["height"] == 32
    assert (run / "report.png").stat().st_size > 10_000
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["generations"][2]["onnx"] == "gen-02/model.onnx"
    db = sqlite3.connect(run / "lineage.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # K = 2: two offspring trained per generation, the fitter one became the generation
    rows = db.execute("SELECT generation, offspring, top1, params FROM offspring ORDER BY 1, 2").fetchall()
    assert [(g, k) for g, k, _, _ in rows] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    for number in (1, 2):
        best = max((r for r in rows if r[0] == number), key=lambda r: (r[2], -r[3]))
        assert gens[number]["offspring"] == best[1]
    assert json.loads(db.execute("SELECT value FROM config WHERE key='env_factor'").fetchone()[0]) == 0.75
    assert not (run / "checkpoint.pt").exists()


def epochs_done(run):
    try:
        db = sqlite3.connect(f"file:{run / 'lineage.sqlite'}?mode=ro", uri=True, timeout=1)
        rows = db.execute("SELECT generation, offspring, epoch, seconds FROM epochs ORDER BY 1, 2, 3").fetchall()
        db.close()
        return rows
    except sqlite3.Error:
        return []


def host_evolve(*args):
    return [sys.executable, "-m", "host.evolve.cli", *args]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_and_repeats_nothing(shapes, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = {"generations": 3, "epochs": 2}
    env = dict(os.environ, OMP_NUM_THREADS="1")  # same thread count in both runs: bit-identical arithmetic
    subprocess.run(host_evolve(*flags(shapes, straight, **extra)), check=True, env=env, capture_output=True)

    process = subprocess.Popen(host_evolve(*flags(shapes, killed, **extra)), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(epochs_done(killed)) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = epochs_done(killed)
    assert 4 <= len(before) < 8, "the kill should land mid-run"

    result = subprocess.run(host_evolve("--resume", str(killed)), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    after = epochs_done(killed)
    assert after[:len(before)] == before  # finished epochs were kept, not trained again
    assert [(g, k, e) for g, k, e, _ in after] == [(g, k, e) for g, k, e, _ in epochs_done(straight)]
    a = json.loads((straight / "summary.json").read_text())["generations"]
    b = json.loads((killed / "summary.json").read_text())["generations"]
    assert [g["generation"] for g in b] == [0, 1, 2, 3]  # no generation twice, none missing
    assert [(g["genome"], g["top1"], g["sha256"]) for g in b] == [(g["genome"], g["top1"], g["sha256"]) for g in a]


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = subprocess.run(host_evolve("--resume", str(tmp_path)), capture_output=True, text=True)
    assert result.returncode == 2 and "no config.json" in result.stderr and "Traceback" not in result.stderr


def test_recovery_fine_tune_and_the_ancestor_as_teacher(shapes, tmp_path):
    """--final-epochs adds one generation: the last one's genome, trained on (weights change, size does not),
    its card naming what it recovers; --distill-from ancestor makes generation 0 every offspring's teacher.
    A resume of the finished run breeds nothing more."""
    import torch
    from host.evolve.checkpoints import load_weights
    from host.evolve.evolution import Evolution
    run = tmp_path / "run"
    config = resolve({}, dict(SETTINGS, data=str(shapes), out=str(run), generations=1, distill_weight=0.5,
                              distill_from="ancestor", final_epochs=1))
    evolution = Evolution(config)
    try:
        summary = evolution.run()
        gens = summary["generations"]
        assert [g["generation"] for g in gens] == [0, 1, 2] and gens[2]["parent"] == 1
        assert gens[2]["genome"] == gens[1]["genome"] and gens[2]["params"] == gens[1]["params"] < gens[0]["params"]
        card = json.loads((run / gens[2]["card"]).read_text())
        assert card["recovery_of"] == 1 and "recovery_of" not in json.loads((run / gens[1]["card"]).read_text())
        assert gens[2]["sha256"] != gens[1]["sha256"]  # trained on: other weights
        epochs = sqlite3.connect(run / "lineage.sqlite").execute(
            "SELECT generation, COUNT(*) FROM epochs GROUP BY generation ORDER BY 1").fetchall()
        assert epochs == [(0, 2), (1, 1), (2, 1)]
        weights = {n: evolution.lineage.generation(n)["weights"] for n in (0, 1)}
        parent = load_weights(run / weights[1], "cpu")
        teacher = evolution.teacher(parent)
        ancestor = load_weights(run / weights[0], "cpu")
        assert teacher is not parent and teacher.genome == ancestor.genome
        assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), ancestor.state_dict().values()))
        assert evolution.teacher(None) is None
        from dataclasses import replace
        evolution.config = replace(config, distill_from="parent")
        assert evolution.teacher(parent) is parent
        evolution.config = replace(config, distill_weight=0.0)
        assert evolution.teacher(parent) is None
    finally:
        evolution.lineage.close()
        evolution.claim.release()
    again = evolve(config, resume=True)
    assert [g["sha256"] for g in again["generations"]] == [g["sha256"] for g in gens]


def test_distill_from_and_final_epochs_are_checked():
    from host.errors import HostError
    with pytest.raises(HostError, match="distill_from = 'teacher' must be 'parent' or 'ancestor'"):
        resolve({}, {"distill_from": "teacher"})
    with pytest.raises(HostError, match="final_epochs = -1 must be >= 0"):
        resolve({}, {"final_epochs": -1})


def test_ancestor_from_a_trained_generation_continues_from_it(shapes, tmp_path):
    """--ancestor-from RUN/gen-01/offspring-0.pt with 0 ancestor epochs: the new run's generation 0 is that model
    (same genome, same top-1 on the same split), and the evolution goes on from it (here with the cost-aware
    heredity of host/evolve/synthesis.py step 5)."""
    first = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(tmp_path / "a"), generations=1)))
    weights = tmp_path / "a" / "gen-01" / "offspring-0.pt"
    second = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(tmp_path / "b"), generations=1,
                                     ancestor_epochs=0, ancestor_from=str(weights), cost_exponent=1.0)))
    start, was = second["generations"][0], first["generations"][1]
    assert start["genome"] == was["genome"] and start["top1"] == was["top1"]
    assert second["generations"][1]["params"] < start["params"]


def test_ancestor_from_refuses_what_is_not_a_model_for_these_classes(shapes, tmp_path):
    import shutil
    from host.errors import HostError
    from host.evolve.checkpoints import load_ancestor
    run = tmp_path / "a"
    evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(run), generations=0)))
    weights = run / "gen-00" / "offspring-0.pt"
    labels = (run / "gen-00" / "labels.txt").read_text().split()
    assert load_ancestor(weights, labels, 0.5).genome.num_classes == len(labels)
    with pytest.raises(HostError, match="no such file"):
        load_ancestor(tmp_path / "none.pt", labels, 0.5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HostError, match="is not a host-evolve model file"):
        load_ancestor(tmp_path / "junk.pt", labels, 0.5)
    with pytest.raises(HostError, match=f"classifies {len(labels)} classes, the data has {len(labels) + 1}"):
        load_ancestor(weights, labels + ["extra"], 0.5)
    with pytest.raises(HostError, match="names other classes or another order"):
        load_ancestor(weights, labels[::-1], 0.5)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(weights, alone / "w.pt")  # no labels.txt beside it: the class count is all that can be checked
    assert load_ancestor(alone / "w.pt", labels[::-1], 0.5) is not None
    with pytest.raises(HostError, match="not both"):
        resolve({}, {"pretrained": "x.pth", "ancestor_from": str(weights)})
    # refused at start, and the new run is taken back
    with pytest.raises(HostError, match="is not a host-evolve model file"):
        evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(tmp_path / "c"), ancestor_from=str(tmp_path / "junk.pt"))))
    assert not (tmp_path / "c" / "lineage.sqlite").exists()


def test_strength_consumer_draws_the_offspring_from_the_consumers_weights(shapes, tmp_path):
    """--strength consumer: generation 1 is the heredity model's draw on consumer_strengths of the ancestor
    (the same seed as a run with filter strengths, another offspring); an unknown kind is refused by name."""
    import numpy as np
    from host.evolve.checkpoints import load_weights
    from host.errors import HostError
    from host.evolve.surgery import cluster_strengths
    from host.evolve.synthesis import sample_offspring, solve_lambda
    from host.evolve.train import derive_seed
    first = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(tmp_path / "a"), generations=0)))
    weights = tmp_path / "a" / "gen-00" / "offspring-0.pt"
    runs = {}
    for kind in ("filter", "consumer"):
        runs[kind] = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(tmp_path / kind), generations=1,
                                             ancestor_epochs=0, ancestor_from=str(weights), strength=kind)))
    ancestor = load_weights(weights, "cpu")
    for kind, summary in runs.items():
        strengths = cluster_strengths(ancestor, kind)
        lam = solve_lambda(strengths, ancestor.genome.num_classes, SETTINGS["env_factor"], kind="params",
                           image_size=32, min_filters=SETTINGS["min_filters"], round_to=SETTINGS["round_to"])
        kept = sample_offspring(strengths, lam, np.random.default_rng(derive_seed(SETTINGS["seed"], 1, 0, 12345)),
                                min_filters=SETTINGS["min_filters"], round_to=SETTINGS["round_to"])
        child = load_weights(tmp_path / kind / "gen-01" / "offspring-0.pt", "cpu")
        assert child.genome.layer_widths() == {name: len(k) for name, k in kept.items()}, kind
        assert json.loads((tmp_path / kind / "config.json").read_text())["strength"] == kind
    assert first["generations"][0]["top1"] == runs["consumer"]["generations"][0]["top1"]
    assert runs["filter"]["generations"][1]["genome"] != runs["consumer"]["generations"][1]["genome"]
    with pytest.raises(HostError, match="strength = 'group' must be one of filter, consumer"):
        resolve({}, {"strength": "group"})
