"""Ablation: how long should the recovery fine-tune (``--final-epochs``) be?

    python bench/recovery_length.py --run RUN --epochs 12 [--generation G] [--out JSON]

The recovery fine-tune of a finished host-evolve run, trained again for ``--epochs`` instead of the run's
``final_epochs``, on the same code path as host-evolve's (host/evolve/evolution.py ``Evolution.breed(recovery=True)``): the
last generation that is not itself a recovery (or ``--generation G``), every filter kept, the run's recipe
(``TrainSettings`` from its config.json: batch, peak rate scaled with it, crops, label smoothing, distillation
from the ancestor or the parent at the run's weight), the rate rewound to its peak and decayed by a cosine over
all the epochs (Renda et al. 2020's rewinding), the epochs seeded as the run seeds them. Top-1 and top-5 on the
run's own held-out split after every epoch (the curve; only the last point is a finished schedule), against the
run's own recovery generation. Prints a table and writes JSON; nothing in RUN is changed.

Errors: a RUN without config.json or summary.json, or a generation without its weights file, exit 2 naming it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def recovery_source(summary: dict, generation: int | None) -> tuple[dict, dict | None]:
    """(the generation to fine-tune, the run's own recovery of it or None) from summary.json's rows.

    A recovery generation is recorded with ``env_factor`` 1.0 and the genome of the one before it (host/evolve/evolution.py
    ``recover``); ValueError when ``generation`` is not in the run or the run has only its ancestor."""
    rows = {row["generation"]: row for row in summary["generations"]}

    def is_recovery(row: dict) -> bool:
        before = rows.get(row["generation"] - 1)
        return row.get("env_factor") == 1.0 and before is not None and before["genome"] == row["genome"]

    if generation is None:
        candidates = [g for g, row in rows.items() if g > 0 and not is_recovery(row)]
        if not candidates:
            raise ValueError("the run has no generation after its ancestor")
        generation = max(candidates)
    if generation not in rows:
        raise ValueError(f"generation {generation} is not in the run (it has {sorted(rows)})")
    own = rows.get(generation + 1)
    return rows[generation], own if own is not None and is_recovery(own) else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished host-evolve run folder")
    parser.add_argument("--epochs", type=int, default=12, help="recovery epochs (default 12)")
    parser.add_argument("--generation", type=int, default=None, help="default: the last that is not a recovery")
    parser.add_argument("--out", default=None, help="JSON file (default RUN-recovery-EPOCHS.json beside RUN)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    for name in ("config.json", "summary.json"):
        if not (run / name).is_file():
            print(f"--run {run}: no {name} there; give a folder a finished host-evolve run wrote", file=sys.stderr)
            return 2
    import torch
    from tqdm import tqdm
    from host.evolve.checkpoints import load_weights
    from host.evolve.config import load_saved
    from host.evolve.evolution import load_dataset, train_settings
    from host.run.layout import RunLayout
    from host.evolve.train import derive_seed, evaluate, make_optimizer, steps_per_epoch, train_one_epoch

    config = load_saved(run / "config.json")  # checked as host-evolve --resume checks it
    summary = json.loads((run / "summary.json").read_text())
    try:
        source, own = recovery_source(summary, args.generation)
    except ValueError as error:
        print(f"--run {run}: {error}", file=sys.stderr)
        return 2
    layout = RunLayout(run)
    generation = source["generation"]
    weights = layout.offspring_weights(generation, source.get("offspring", 0))
    teacher_weights = weights if config.distill_from != "ancestor" else layout.offspring_weights(0, 0)
    for path in (weights, teacher_weights):
        if not path.is_file():
            print(f"--run {run}: {path} is missing; the run's weights are needed", file=sys.stderr)
            return 2
    data = load_dataset(config, layout)  # the run's own split and decoded-image cache
    device = torch.device("cpu")
    model = load_weights(weights, device).to(memory_format=torch.channels_last)
    teacher = load_weights(teacher_weights, device).eval().to(memory_format=torch.channels_last) \
        if config.distill_weight > 0 else None
    settings = train_settings(config, len(data.train), args.epochs)  # host-evolve's own recipe for this run
    optimizer, scheduler = make_optimizer(model, settings,
                                          args.epochs * steps_per_epoch(len(data.train), settings.batch_size))
    recovery_generation = generation + 1  # the run seeds its recovery's epochs as this generation's
    # offspring number: 0, or after the draws of a generation that was not accepted (host/evolve/evolution.py recover)
    recovery_index = own.get("offspring", 0) if own else 0
    curve, started = [], time.perf_counter()
    for epoch in range(args.epochs):
        stats = train_one_epoch(model, data.train, data.spec, optimizer, scheduler, settings,
                                derive_seed(config.seed, recovery_generation, recovery_index, epoch), device, teacher,
                                desc=f"recovery epoch {epoch + 1}/{args.epochs}")
        scores = evaluate(model, data.val, data.spec, device)
        curve.append({"epoch": epoch + 1, "loss": stats["loss"], "top1": scores["top1"], "top5": scores["top5"]})
        tqdm.write(f"epoch {epoch + 1}/{args.epochs}: loss {stats['loss']:.3f}, val top-1 {100 * scores['top1']:.1f} %")
    ancestor_top1 = summary["generations"][0]["top1"]
    result = {"run": str(run), "generation": generation, "params": source["params"], "size_mb": source["size_mb"],
              "epochs": args.epochs, "seconds": round(time.perf_counter() - started, 1),
              "ancestor_top1": ancestor_top1, "before_top1": source["top1"],
              "own_recovery": None if own is None else {"generation": own["generation"], "top1": own["top1"],
                                                         "epochs": config.final_epochs},
              "curve": curve, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out) if args.out else run.parent / f"{run.name}-recovery-{args.epochs}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{run}: generation {generation}, {source['params']:,} params ({source['size_mb']:.3f} MB), "
          f"ancestor {100 * ancestor_top1:.1f} %")
    print("| recovery | top-1 % | vs ancestor |\n|---|---:|---:|")
    print(f"| none (generation {generation}) | {100 * source['top1']:.1f} | {100 * (source['top1'] - ancestor_top1):+.1f} |")
    if own is not None:
        print(f"| the run's own, {config.final_epochs} epochs | {100 * own['top1']:.1f} | "
              f"{100 * (own['top1'] - ancestor_top1):+.1f} |")
    final = curve[-1]["top1"]
    print(f"| {args.epochs} epochs (this bench) | {100 * final:.1f} | {100 * (final - ancestor_top1):+.1f} |")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
