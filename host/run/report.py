"""summary.json and report.png of a run, made from the lineage alone (so they can be redrawn any time)."""
from __future__ import annotations

import io
import json

from contract.files import atomic_write
from contract.generation_files import STATIC_BATCH_ONNX
from host.run.layout import RunLayout
from host.run.lineage import Lineage
from host.run.acceptance import chance_share, counts_of, fastest_within_bar, interval, never_predicted, run_best_generation, small_split_warning


def pareto_front(points: list[dict]) -> list[int]:
    """Generations not dominated in (smaller size, higher top-1): no other is at least as small and as accurate
    and strictly better in one of the two."""
    front = []
    for p in points:
        dominated = any(q["size_bytes"] <= p["size_bytes"] and q["top1"] >= p["top1"]
                        and (q["size_bytes"] < p["size_bytes"] or q["top1"] > p["top1"]) for q in points)
        if not dominated:
            front.append(p["generation"])
    return sorted(front)


def static_batch_onnx(layout: RunLayout, onnx: str) -> str | None:
    """The generation's ``model-b1.onnx`` relative to RUN, when it exists."""
    path = (layout.root / onnx).parent / STATIC_BATCH_ONNX
    return layout.relative(path) if path.is_file() else None


def build_summary(layout: RunLayout, lineage: Lineage, preprocess: dict, labels: list[str],
                  stopped: str | None = None) -> dict:
    """summary.json's content: every generation (with its device figures), best_generation and why
    (host/run/acceptance.py, the --top1-tolerance rule), the offspring not accepted, the Pareto front,
    ``stopped`` (why the run ended early; None when it ran its course) and the run's config."""
    device_fps, device_figures = lineage.device_fps(), lineage.device_figures()
    generations = []
    for row in lineage.generations():
        generations.append({
            "generation": row["generation"], "parent": row["parent"], "offspring": row["offspring"],
            "params": row["params"], "size_bytes": row["size_bytes"], "size_mb": row["size_bytes"] / 1e6,
            "macs": row["macs"], "top1": row["top1"], "top5": row["top5"], "train_seconds": row["train_seconds"],
            "env_factor": row["env_factor"], "lambda": row["lambda"], "onnx": row["onnx"], "sha256": row["sha256"],
            "labels": row["labels"], "card": row["card"], "genome": json.loads(row["genome"]),
            "local_fps": row["local_fps"], "device_fps": device_fps.get(row["generation"]),
            "device_figures": device_figures.get(row["generation"], []),  # per device and kind of measurement
            "steering_fps": row.get("steering_fps"), "fps_source": row.get("fps_source"),
            # the static-batch twin for jetson-inference (runs exported before it existed have none)
            "onnx_static_batch": static_batch_onnx(layout, row["onnx"]), **validation_figures(row, labels)})
    ancestor = generations[0] if generations else None
    config = lineage.config()
    tolerance = config.get("top1_tolerance", 0.02)
    best, best_reason = run_best_generation(generations, config, labels)
    accepted = {(g["generation"], g["offspring"]) for g in generations}
    # offspring bred but not accepted as a generation: the losers of a selection and collapsed draws
    rejected = [{"generation": o["generation"], "offspring": o["offspring"], "top1": o["top1"],
                 "size_bytes": o["size_bytes"], "env_factor": o.get("env_factor")}
                for o in lineage.all_offspring() if (o["generation"], o["offspring"]) not in accepted]
    return {"generations": generations, "stopped": stopped, "best_generation": best, "best_reason": best_reason,
            "top1_tolerance": tolerance, "num_classes": len(labels), "rejected_offspring": rejected,
            "target_fps": config.get("target_fps") or None, "pareto": pareto_front(generations), "preprocess": preprocess,
            "labels": labels, "config": config, "skipped_files": len(lineage.skipped()),
            "validation": validation_summary(ancestor, config),
            "fastest_within_bar": fastest_within_bar(generations, tolerance, config.get("top1_floor") or 0.0),
            "chance": chance_share(len(labels), (ancestor or {}).get("val_counts")),
            "compression": (ancestor["size_bytes"] / generations[-1]["size_bytes"]) if ancestor else None}


def validation_figures(row: dict, labels: list[str]) -> dict:
    """A generation's top-1 with what it rests on: ``val_images``, ``val_correct``, ``top1_interval`` (Wilson's 95 %,
    host/run/acceptance.py), ``recall`` per class ({label: recall or None for a class with no validation image}) and
    ``never_predicts`` (labels of validation classes it never answers); {} for a run made before counts were kept."""
    counts = counts_of(row)
    if counts is None:
        return {}
    val = row["val_counts"]
    names = list(labels) if len(labels) == len(val["support"]) else [f"class {c}" for c in range(len(val["support"]))]
    return {"val_counts": val, "val_images": counts[1], "val_correct": counts[0], "top1_interval": list(interval(*counts)),
            "recall": {name: (right / support if support else None)
                       for name, support, right in zip(names, val["support"], val["correct"])},
            "never_predicts": [names[c] for c in never_predicted(row)]}


def validation_summary(ancestor: dict | None, config: dict) -> dict | None:
    """summary.json's ``validation``: the split's size and, when it is too small for the tolerances asked, why
    (host/run/acceptance.py small_split_warning)."""
    if not ancestor or "val_images" not in ancestor:
        return None
    return {"images": ancestor["val_images"],
            "warning": small_split_warning(ancestor["val_images"], config.get("top1_tolerance", 0.02),
                                           config.get("max_drop"))}


def write_summary(layout: RunLayout, summary: dict) -> None:
    atomic_write(layout.summary, json.dumps(summary, indent=2))


def plot_report(layout: RunLayout, summary: dict) -> list[str]:
    """report.png: top-1 against size (Pareto front marked), and size/MACs/fps per generation (the images/s
    axis only when a speed was measured or targeted). Returns the y-axis labels drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = summary["generations"]
    if not gens:
        return []
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    sizes = [g["size_mb"] for g in gens]
    top1 = [100 * g["top1"] for g in gens]
    left.plot(sizes, top1, "o-", color="tab:blue", alpha=0.5, label="generations (lineage)")
    spans = [(g["size_mb"], 100 * g["top1"], 100 * g["top1_interval"][0], 100 * g["top1_interval"][1])
             for g in gens if g.get("top1_interval")]
    if spans:  # each top-1 with its 95 % interval: a small validation split moves top-1 in large steps
        x, y, low, high = zip(*spans)
        left.errorbar(x, y, yerr=[[a - b for a, b in zip(y, low)], [b - a for a, b in zip(y, high)]], fmt="none",
                      ecolor="tab:blue", alpha=0.35, capsize=3,
                      label=f"95 % interval ({gens[0].get('val_images', '?')} validation images)")
    for g, x, y in zip(gens, sizes, top1):
        left.annotate(str(g["generation"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = [g for g in gens if g["generation"] in summary["pareto"]]
    left.plot([g["size_mb"] for g in front], [100 * g["top1"] for g in front], "s", color="tab:red",
              markersize=9, fillstyle="none", label="Pareto front")
    rejected = summary.get("rejected_offspring") or []
    if rejected:
        left.plot([r["size_bytes"] / 1e6 for r in rejected], [100 * r["top1"] for r in rejected], "x", color="grey",
                  label="offspring not accepted")
    # chance and the tolerance are drawn and the axis always spans from below chance to 100 %, so a flat line
    # at chance reads as what it is, not as a result
    chance = 100.0 * (summary.get("chance") or 1.0 / max(1, summary.get("num_classes") or
                                                          len(summary.get("labels") or []) or 1))
    left.axhline(chance, color="black", linestyle=":", label=f"chance ({chance:.1f} %: 1/N or the majority class)")
    tolerance = summary.get("top1_tolerance")
    if tolerance is not None:
        left.axhline(top1[0] - 100 * tolerance, color="tab:green", linestyle="--", alpha=0.6,
                     label=f"ancestor - {100 * tolerance:g} points (best_generation's bar)")
    if summary.get("best_generation") is not None:
        best = next(g for g in gens if g["generation"] == summary["best_generation"])
        left.plot([best["size_mb"]], [100 * best["top1"]], "*", color="gold", markersize=16, markeredgecolor="black",
                  label=f"best_generation ({best['generation']})")
    left.set_ylim(max(0.0, chance - 10.0), 100.0)
    left.set_xlabel("model size, MB (fp32 weights)")
    left.set_ylabel("top-1, %")
    left.set_title("Accuracy against size")
    left.invert_xaxis()
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    numbers = [g["generation"] for g in gens]
    right.plot(numbers, sizes, "o-", label="size, MB")
    right.plot(numbers, [g["macs"] / gens[0]["macs"] * sizes[0] for g in gens], "^--",
               label="MACs (scaled to gen 0's size)")
    right.set_xlabel("generation")
    right.set_ylabel("MB")
    right.grid(alpha=0.3)
    series = speed_series(gens)
    lines = right.get_legend_handles_labels()
    if series or summary.get("target_fps"):  # an images/s axis only when there is something to draw on it
        fps_axis = right.twinx()
        for name, style, points, hollow in series:
            fps_axis.plot(*zip(*points), style, label=name, **({"markerfacecolor": "none"} if hollow else {}))
        fps_axis.set_ylabel("images/s (from 0)")
        fps_axis.set_ylim(bottom=0)  # from zero: a 6 % change must not look like 31 %
        if summary.get("target_fps"):
            fps_axis.axhline(summary["target_fps"], color="grey", linestyle=":", label="target fps")
        more = fps_axis.get_legend_handles_labels()
        lines = (lines[0] + more[0], lines[1] + more[1])
    right.legend(lines[0], lines[1], fontsize=8)
    right.set_title("Size, compute and speed by generation")
    figure.tight_layout()
    drawn = [axis.get_ylabel() for axis in figure.axes]
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    atomic_write(layout.report, image.getvalue())
    return drawn


def speed_series(gens: list[dict]) -> list[tuple]:
    """What the speed axis draws: (legend, style, [(generation, fps)], hollow) for the local ONNX Runtime figure
    and each device's batch-1 benchmark, named by device and kind; figures a device marked unstable (its runs
    disagreed) are drawn apart, hollow, and say so. Live figures (a camera's frame rate) are not speeds of the
    model and are left out."""
    series = []
    local = [(g["generation"], g["local_fps"]) for g in gens if g.get("local_fps")]
    if local:
        series.append(("local fps (ONNX Runtime, batch 1, this machine)", "g.-", local, False))
    by_device: dict = {}
    for g in gens:
        for figure in g.get("device_figures") or []:
            if figure.get("measurement") == "benchmark-b1" and figure.get("fps"):
                key = (figure["device_id"], figure.get("stable") is not False)
                by_device.setdefault(key, []).append((g["generation"], figure["fps"]))
    for (device, stable), points in sorted(by_device.items()):
        series.append((f"{device}: benchmark, batch 1" + ("" if stable else " (UNSTABLE: runs disagreed)"),
                       "m*-" if stable else "mx:", points, not stable))
    return series


def refresh(layout: RunLayout, lineage: Lineage, preprocess: dict, labels: list[str],
            stopped: str | None = None) -> dict:
    """Write summary.json and report.png from the lineage as it stands (after every generation and at the end);
    returns the summary."""
    summary = build_summary(layout, lineage, preprocess, labels, stopped)
    write_summary(layout, summary)
    plot_report(layout, summary)
    return summary


def redraw(layout: RunLayout, lineage: Lineage) -> dict | None:
    """summary.json and report.png drawn again from the lineage (new device figures), keeping what only the
    evolution knows (the preprocessing, labels, why it stopped) from the summary.json there; None when there is
    none yet (the evolution writes the first)."""
    try:
        old = json.loads(layout.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return refresh(layout, lineage, old.get("preprocess") or {}, old.get("labels") or [], old.get("stopped"))
