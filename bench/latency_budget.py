"""Benchmark: how well the latency table predicts every generation of a run, and what each run bought.

    python bench/latency_budget.py --run R1 [--run R2 ...] [--table TABLE.json] [--rounds 3] [--json OUT]

For every generation of every run: size, MACs, top-1 with its image count and 95 % interval (the run's
summary.json), the latency the table predicts (--table for every run, else the run's own RUN/latency-table.json) and the
latency measured on the exported gen-XX/model.onnx with ONNX Runtime on one thread at batch 1, alternately with
the run's gen-00 (``--rounds`` times; each a median of 200 runs, the least of two): the measured speed-up over
the ancestor is a ratio measured side by side, the figure a shared CPU does not move much. Prints a markdown
table per run and the prediction's error against the target (within 10 %, issue 29).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from bench.machine import describe_machine  # noqa: E402
from contract import latency_table as lt  # noqa: E402
from contract.generation_files import MODEL_ONNX  # noqa: E402
from device.engine_options import EngineOptions  # noqa: E402
from device.layer_table import BackendTimer  # noqa: E402
from host.run.layout import RunLayout  # noqa: E402

RUNS_PER_MEDIAN = 200


def measure_pair(timer: BackendTimer, reference: bytes, model: bytes, size: int, rounds: int) -> tuple[float, float, list]:
    """(reference ms, model ms, speed-up ratios): the two measured alternately ``rounds`` times."""
    shape = (1, 3, size, size)
    pairs = [(timer.time_ms(reference, shape, RUNS_PER_MEDIAN, repeats=2), timer.time_ms(model, shape, RUNS_PER_MEDIAN,
                                                                                       repeats=2))
             for _ in range(rounds)]
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            [p[0] / p[1] for p in pairs])


def measure_run(run: Path, table: dict | None, rounds: int) -> dict:
    layout = RunLayout(run)
    summary = json.loads(layout.summary.read_text())
    own = layout.latency_table
    if table is None and own.is_file():  # --table, where given, prices every run alike
        table = lt.load_table(str(own))
    size = json.loads(layout.config.read_text())["image_size"]
    timer = BackendTimer(EngineOptions("onnxruntime"), threads=1)
    rows = []
    try:
        reference = (run / summary["generations"][0]["onnx"]).read_bytes()
        for g in summary["generations"]:
            genome = g["genome"] if isinstance(g["genome"], dict) else json.loads(g["genome"])
            model = (run / g["onnx"]).read_bytes()
            ref_ms, ms, ratios = measure_pair(timer, reference, model, size, rounds)
            row = {"generation": g["generation"], "mb": g["size_bytes"] / 1e6, "macs_m": g["macs"] / 1e6,
                   "top1": g["top1"], "val_images": g.get("val_images"), "val_correct": g.get("val_correct"),
                   "top1_interval": g.get("top1_interval"), "measured_ms": ms, "ancestor_ms": ref_ms,
                   "speedup": statistics.median(ratios), "speedup_rounds": ratios}
            if table is not None:
                row["predicted_ms"] = lt.predict_ms(table, lt.widths_of(genome))
                row["error"] = abs(row["predicted_ms"] - ms) / ms
            rows.append(row)
            print(f"  {run.name} gen {g['generation']:02d}: {ms:.3f} ms measured, "
                  + (f"{row['predicted_ms']:.3f} predicted ({100 * row['error']:.1f} %), " if table else "")
                  + f"{row['speedup']:.2f}x the ancestor", file=sys.stderr)
    finally:
        timer.close()
    return {"run": str(run), "budget": json.loads(layout.config.read_text())["budget"], "rows": rows,
            "table_check": (table or {}).get("check", {}).get("max_error")}


def markdown(result: dict) -> str:
    lines = [f"**{Path(result['run']).name}** (budget {result['budget']})", "",
             "| gen | MB | MACs (M) | top-1 % | predicted ms | measured ms | error | b1 vs gen 0, side by side |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        top1 = f"{100 * r['top1']:.1f}"
        if r.get("val_images"):
            low, high = r["top1_interval"]
            top1 += f" ({r['val_correct']}/{r['val_images']}, CI {100 * low:.0f}-{100 * high:.0f})"
        predicted = f"{r['predicted_ms']:.3f}" if "predicted_ms" in r else "-"
        error = f"{100 * r['error']:.1f} %" if "error" in r else "-"
        lines.append(f"| {r['generation']} | {r['mb']:.3f} | {r['macs_m']:.1f} | {top1} | {predicted} | "
                     f"{r['measured_ms']:.3f} | {error} | {r['speedup']:.2f}x |")
    errors = [r["error"] for r in result["rows"] if "error" in r]
    if errors:
        lines += ["", f"prediction within {100 * max(errors):.1f} % of measured for all {len(errors)} generations "
                      f"(median {100 * statistics.median(errors):.1f} %; target 10 %)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="a host-evolve run folder (repeatable)")
    parser.add_argument("--table", help="the latency table that prices every run (default: each run's own "
                                            "RUN/latency-table.json; none for runs that kept none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    table = lt.load_table(args.table) if args.table else None
    print(f"machine: {describe_machine()}; ONNX Runtime CPU, one thread, batch 1")
    results = [measure_run(Path(run), table, args.rounds) for run in args.run]
    for result in results:
        print()
        print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
