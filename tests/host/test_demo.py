"""The README's first command: host-evolve --demo, with no data and no network, end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_evolves_visibly_smaller_nets_far_above_chance(tmp_path):
    """With one thread (issue 15: generation 3 fell from 89 % to 42.5 % there and the collapsed generation 5 was
    called best): no accepted generation more than --max-drop below its parent, best_generation within the
    tolerance of the ancestor, and the printed next steps serve that one with commands that run."""
    run = tmp_path / "demo"
    # 2 of the demo's 5 generations: the whole demo dominated the suite (894 s of 3,000 under load, issue 18);
    # all 5, on one and two threads and three seeds, are bench/robustness.py demo (docs/benchmarks.md 9b)
    result = subprocess.run([sys.executable, "-m", "host.evolve.cli", "--demo", "--out", str(run), "--generations", "2"],
                            capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_PROXY": "*",
                                            "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    gens = summary["generations"]
    assert len(gens) == 3, summary["stopped"]
    assert all(a["params"] > b["params"] for a, b in zip(gens, gens[1:]))
    assert min(g["top1"] for g in gens) > 0.6  # 4 classes: chance is 25 %
    assert all(b["top1"] >= a["top1"] - summary["config"]["max_drop"] for a, b in zip(gens, gens[1:]))
    best = next(g for g in gens if g["generation"] == summary["best_generation"])
    assert best["top1"] >= gens[0]["top1"] - summary["top1_tolerance"]
    assert f"best: generation {best['generation']}" in result.stdout
    assert f"device-serve --model {run / best['onnx']}" in result.stdout  # ends with how to serve it
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "host-serve").is_file():  # a venv: the commands printed are the venv's, runnable anywhere
        assert f"{bin_dir / 'host-serve'} --run" in result.stdout
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr  # no bars in a log: stderr is not a terminal
