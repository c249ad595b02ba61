"""The frontier in one picture: every measured preset lineage and peer against issue 10's targets.

    python bench/frontier.py --preset runs/bench-imagenette-compact --preset runs/bench-imagenette-tiny \
        --peers runs/peers/full --out docs/frontier.png

Reads each preset run's bench.json (bench/evolve_imagenette.py) and a peers.json (bench/peers.py). Draws
top-1 lost against each run's own ancestor (points; negative = better than the ancestor) against size (MB)
and against batch-1 speed over the ancestor (ONNX Runtime CPU, measured alternately with it), with the
targets as boxes (compact: <= 0.95 MB, <= 1 point, >= 2x; tiny: <= 0.49 MB, <= 2 points, >= 3x) and the
paper's point (0.95 MB, 4.2 points, 1.64x on a Jetson TX1). Prints the same figures as a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGETS = {"compact": (0.95, 1.0, 2.0), "tiny": (0.49, 2.0, 3.0)}  # MB, points lost at most, speed-up at least
PAPER = {"size_mb": 0.95, "drop": 4.2, "speed": 1.64}


def preset_series(run: Path) -> dict:
    """A preset's lineage: per generation MB, points lost against its generation 0, batch-1 speed-up."""
    bench = json.loads((run / "bench.json").read_text())
    rows = bench["generations"]
    base = rows[0]["top1"]
    speed = [r["vs_ancestor_b1"] for r in rows]
    if "speedup_side_by_side_b1" in bench:  # the last generation measured again at the end, 3 rounds
        speed[-1] = bench["speedup_side_by_side_b1"]["median"]
    return {"label": "evolution, preset " + run.name.removeprefix("bench-imagenette-"), "kind": "preset",
            "size_mb": [r["size_mb"] for r in rows], "drop": [100 * (base - r["top1"]) for r in rows],
            "speed": speed, "ancestor_top1": base}


def peer_series(peers: Path) -> list[dict]:
    """bench/peers.py's methods: each a line from its ancestor through its sizes."""
    result = json.loads((peers / "peers.json").read_text())
    base = result["ancestor"]
    series = []
    for method in dict.fromkeys(r["method"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["method"] == method]
        series.append({"label": f"peers: {method}", "kind": "peer",
                       "size_mb": [base["size_mb"]] + [r["size_mb"] for r in rows],
                       "drop": [0.0] + [100 * (base["top1"] - r["top1"]) for r in rows],
                       "speed": [1.0] + [r.get("b1_vs_ancestor", float("nan")) for r in rows],
                       "ancestor_top1": base["top1"]})
    return series


def plot(series: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.patches import Rectangle
    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    for axis, key, label in ((axes[0], "size_mb", "size, MB (fp32 weights, log scale)"),
                             (axes[1], "speed", "batch-1 speed over its ancestor (ONNX Runtime CPU, side by side)")):
        for name, (size, drop, speed) in TARGETS.items():
            x0, width = (0.3, size - 0.3) if key == "size_mb" else (speed, 6 - speed)
            axis.add_patch(Rectangle((x0, -3), width, drop + 3, alpha=0.12, color="tab:green" if name == "compact"
                                     else "tab:purple", label=f"target {name}"))
        for s in series:
            style = "o-" if s["kind"] == "preset" else "s--"
            axis.plot(s[key], s["drop"], style, markersize=4 if s["kind"] == "preset" else 6, label=s["label"])
        axis.plot([PAPER[key]], [PAPER["drop"]], "k*", markersize=12, label="SquishedNets paper (TX1)")
        if key == "size_mb":
            axis.set_xscale("log")
            axis.set_xticks([3, 2, 1, 0.7, 0.5, 0.3])
            axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.invert_xaxis()
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 points lost against its own ancestor")
        axis.invert_yaxis()
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(series: list[dict]) -> str:
    lines = ["| series | ancestor top-1 % | last MB | points lost | b1 speed-up |", "|---|---:|---:|---:|---:|"]
    for s in series:
        lines.append(f"| {s['label']} | {100 * s['ancestor_top1']:.1f} | {s['size_mb'][-1]:.3f} | "
                     f"{s['drop'][-1]:.1f} | {s['speed'][-1]:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", default=[], help="a preset's run folder (with bench.json)")
    parser.add_argument("--peers", action="append", default=[], help="a bench/peers.py folder (with peers.json)")
    parser.add_argument("--out", default="frontier.png")
    parser.add_argument("--title", default="squishednets on Imagenette at 112 px: the frontier against issue 10's targets")
    args = parser.parse_args(argv)
    series = []
    for run in args.preset:
        if not (Path(run) / "bench.json").is_file():
            print(f"--preset {run}: no bench.json there; run bench/evolve_imagenette.py --run {run} first",
                  file=sys.stderr)
            return 2
        series.append(preset_series(Path(run)))
    for folder in args.peers:
        if not (Path(folder) / "peers.json").is_file():
            print(f"--peers {folder}: no peers.json there; run bench/peers.py --out {folder} first", file=sys.stderr)
            return 2
        series += peer_series(Path(folder))
    if not series:
        print("nothing to draw: give --preset RUN and/or --peers FOLDER", file=sys.stderr)
        return 2
    plot(series, Path(args.out), args.title)
    print(table(series))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
