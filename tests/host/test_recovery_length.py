"""bench/recovery_length.py: the recovery fine-tune trained again for other lengths, on host-evolve's own code
path: one epoch reproduces the run's own 1-epoch recovery exactly (same seeds, same schedule), on real JPEGs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from host.evolve.config import resolve
from host.evolve.demo import write_demo_dataset
from host.evolve.evolution import evolve

from bench.recovery_length import recovery_source

PROJECT = Path(__file__).resolve().parents[2]

SETTINGS = {"image_size": 32, "epochs": 1, "ancestor_epochs": 2, "env_factor": 0.75, "round_to": 4,
            "min_filters": 2, "batch_size": 32, "lr": 0.01, "crop_scale": 0.7, "seed": 5, "max_drop": 1.0,
            "distill_weight": 0.5, "distill_from": "ancestor", "final_epochs": 1, "generations": 1}


def bench(*args):
    return subprocess.run([sys.executable, str(PROJECT / "bench" / "recovery_length.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=PROJECT)


def test_one_epoch_reproduces_the_runs_own_recovery(tmp_path):
    shapes = write_demo_dataset(tmp_path / "shapes", per_class=40, size=40)
    run = tmp_path / "run"
    summary = evolve(resolve({}, dict(SETTINGS, data=str(shapes), out=str(run))))
    assert [g["generation"] for g in summary["generations"]] == [0, 1, 2]
    out = tmp_path / "r1.json"
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    result = bench("--run", run, "--epochs", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    measured = json.loads(out.read_text())
    assert measured["generation"] == 1 and measured["own_recovery"]["generation"] == 2
    assert measured["curve"][-1]["top1"] == pytest.approx(summary["generations"][2]["top1"], abs=1e-9)
    assert "| 1 epochs (this bench) |" in result.stdout
    after = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    assert after == before  # nothing in RUN written or changed


def test_which_generation_is_fine_tuned():
    genome_a, genome_b = {"conv1": 8}, {"conv1": 4}
    rows = [{"generation": 0, "genome": {"conv1": 16}, "env_factor": None},
            {"generation": 1, "genome": genome_a, "env_factor": 0.9},
            {"generation": 2, "genome": genome_b, "env_factor": 0.9},
            {"generation": 3, "genome": genome_b, "env_factor": 1.0}]  # the recovery of 2
    source, own = recovery_source({"generations": rows}, None)
    assert source["generation"] == 2 and own["generation"] == 3
    source, own = recovery_source({"generations": rows}, 1)
    assert source["generation"] == 1 and own is None
    source, own = recovery_source({"generations": rows[:3]}, None)  # a run without a recovery
    assert source["generation"] == 2 and own is None
    with pytest.raises(ValueError, match="generation 7 is not in the run"):
        recovery_source({"generations": rows}, 7)
    with pytest.raises(ValueError, match="no generation after its ancestor"):
        recovery_source({"generations": rows[:1]}, None)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    result = bench("--run", tmp_path, "--epochs", 1)
    assert result.returncode == 2 and "no config.json there" in result.stderr and "Traceback" not in result.stderr
