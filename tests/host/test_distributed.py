"""Scale-out: two CPU processes under torchrun (gloo) give the same lineage shape as one process."""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CIFAR_MINI, needs

FLAGS = ["--data", str(CIFAR_MINI), "--image-size", "32", "--generations", "1", "--epochs", "1",
         "--ancestor-epochs", "1", "--env-factor", "0.8", "--offspring", "2", "--seed", "1", "--lr", "0.01",
         "--max-drop", "1", "--candidates", "3"]  # the lineage's shape, not learning: a 1-epoch ancestor may stay
# at chance; selection's candidates are scored across the ranks, and a rank that chose another one stops the run


def shape_of(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    db = sqlite3.connect(run / "lineage.sqlite")
    return {"generations": [(g["generation"], g["parent"]) for g in summary["generations"]],
            "offspring": db.execute("SELECT generation, offspring FROM offspring ORDER BY 1, 2").fetchall(),
            "epochs": db.execute("SELECT generation, offspring, epoch FROM epochs ORDER BY 1, 2, 3").fetchall(),
            "exports": sorted(str(p.relative_to(run)) for p in run.glob("gen-*/model.onnx")),
            "shrinks": all(a["params"] > b["params"] for a, b in zip(summary["generations"], summary["generations"][1:]))}


@pytest.mark.slow
@needs(CIFAR_MINI)
def test_two_gloo_processes_make_the_same_lineage_shape_as_one(tmp_path):
    host_evolve = shutil.which("host-evolve", path=str(Path(sys.executable).parent))
    assert host_evolve, "host-evolve is not installed in this environment (pip install -e .)"
    single, double = tmp_path / "one", tmp_path / "two"
    # mechanics, not learning: one ancestor epoch at 32 px is near chance, which acceptance (max_drop) refuses
    config = tmp_path / "mechanics.toml"
    config.write_text("max_drop = 1.0\ndistill_weight = 0.0\n")
    flags = FLAGS + ["--config", str(config)]
    subprocess.run([sys.executable, host_evolve, *flags, "--out", str(single)], check=True, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*torchrun, host_evolve, *flags, "--out", str(double)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert shape_of(double) == shape_of(single)
    assert shape_of(double)["shrinks"]
    # rank 1 wrote nothing of its own: one lineage, one set of exports, no stray files
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())
