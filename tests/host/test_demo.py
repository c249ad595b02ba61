"""The README's first command: host-evolve --demo, with no data and no network, end to end."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_evolves_visibly_smaller_nets_far_above_chance(tmp_path):
    run = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "host.cli", "--demo", "--out", str(run)], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_PROXY": "*"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    gens = summary["generations"]
    assert len(gens) == 6
    assert gens[-1]["size_bytes"] < 0.6 * gens[0]["size_bytes"]  # visibly smaller: R 0.85 over 5 generations
    assert all(a["params"] > b["params"] for a, b in zip(gens, gens[1:]))
    assert min(g["top1"] for g in gens) > 0.6  # 4 classes: chance is 25 %
    assert f"device-serve --model {run / gens[-1]['onnx']}" in result.stdout  # ends with how to serve it
    assert "host-serve --run" in result.stdout
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr  # no bars in a log: stderr is not a terminal
