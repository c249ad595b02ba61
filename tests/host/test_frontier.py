"""bench/frontier.py: preset lineages and peers read from their JSON files into one plot and table."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "frontier.py"


def write_preset(run: Path, top1s, sizes, speeds):
    run.mkdir(parents=True)
    rows = [{"generation": g, "top1": t, "size_mb": s, "vs_ancestor_b1": v}
            for g, (t, s, v) in enumerate(zip(top1s, sizes, speeds))]
    (run / "bench.json").write_text(json.dumps({"generations": rows}))


def write_peers(folder: Path):
    folder.mkdir(parents=True)
    ancestor = {"method": "ancestor", "top1": 0.9, "size_mb": 2.911}
    rows = [{"method": m, "target_mb": t, "top1": top1, "size_mb": t - 0.01, "b1_vs_ancestor": sp}
            for m, t, top1, sp in (("uniform", 0.95, 0.88, 1.8), ("uniform", 0.49, 0.85, 2.5),
                                   ("evolution", 0.95, 0.89, 2.0), ("evolution", 0.49, 0.86, 2.9))]
    (folder / "peers.json").write_text(json.dumps({"ancestor": ancestor, "rows": rows}))


def run(*args):
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True)


def test_points_lost_are_against_each_runs_own_ancestor_and_the_plot_is_written(tmp_path):
    write_preset(tmp_path / "bench-imagenette-compact", [0.897, 0.9, 0.889], [2.911, 1.5, 0.94], [1.0, 1.4, 2.1])
    write_peers(tmp_path / "peers")
    out = tmp_path / "frontier.png"
    result = run("--preset", tmp_path / "bench-imagenette-compact", "--peers", tmp_path / "peers", "--out", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    compact = next(line for line in lines if "preset compact" in line)
    assert "| 89.7 | 0.940 | 0.8 | 2.10x |" in compact  # 89.7 - 88.9 = 0.8 points, its own gen 0
    assert any("peers: evolution | 90.0 | 0.480 | 4.0 | 2.90x" in line for line in lines)
    assert out.stat().st_size > 20_000


def test_a_folder_without_results_is_named_with_the_fix(tmp_path):
    result = run("--preset", tmp_path, "--out", tmp_path / "f.png")
    assert result.returncode == 2 and f"--preset {tmp_path}: no bench.json there" in result.stderr
    assert "Traceback" not in result.stderr
    assert run("--out", tmp_path / "f.png").returncode == 2
