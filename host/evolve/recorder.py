"""Rank 0 writes, the other ranks only train: the evolution loop's writes go through one Recorder.

Under torchrun every rank runs the same loop; ``Recorder(world.is_main=False)`` makes each write a no-op, so
the loop reads the same on every rank: lineage.sqlite (config history, skipped images, epochs, offspring,
generations), the weights and checkpoints, summary.json and report.png, and the loop's console lines. Outside it,
also on rank 0 only but gated where they happen: the run folder's claim and config.json (host/evolve/evolution.py
Evolution.__init__), each generation's ONNX export (export_and_record) and the local speed measurements.
"""
from __future__ import annotations

import logging

from tqdm import tqdm

from host.evolve.checkpoints import atomic_torch_save, save_model
from host.run.lineage import Lineage
from host.run.report import refresh

log = logging.getLogger("squishednets.evolve")


class Recorder:
    def __init__(self, lineage: Lineage, is_main: bool):
        self.lineage, self.active = lineage, is_main

    def say(self, text: str) -> None:
        """One line on the console, above the progress bars."""
        if self.active:
            tqdm.write(text)

    def warn(self, text: str) -> None:
        if self.active:
            log.warning(text)

    def epoch(self, generation: int, offspring: int, epoch: int, stats: dict) -> None:
        if self.active:
            self.lineage.add_epoch(generation, offspring, epoch, stats)

    def checkpoint(self, state: dict, path) -> None:
        if self.active:
            atomic_torch_save(state, path)

    def model(self, model, path, dropout: float) -> None:
        if self.active:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(model, path, dropout)

    def offspring(self, row: dict) -> None:
        if self.active:
            self.lineage.add_offspring(row)

    def config(self, config: dict) -> None:
        """The run's settings, appended to lineage.sqlite's config history (a resume with a new --lr adds one)."""
        if self.active:
            self.lineage.save_config(config)

    def skipped(self, skipped: list, split: str) -> None:
        """Images that could not be decoded, by path and reason (counted in summary.json)."""
        if self.active:
            self.lineage.add_skipped(skipped, split)

    def generation(self, row: dict, checkpoint, line: str) -> None:
        """An accepted generation into the lineage; the training checkpoint it came from is then spent."""
        if self.active:
            self.lineage.add_generation(row)
            checkpoint.unlink(missing_ok=True)
            tqdm.write(line)

    def summary(self, layout, data, stopped: str | None = None) -> dict:
        """summary.json and report.png from the lineage as it stands (host/run/report.py refresh); {} off rank 0."""
        if not self.active:
            return {}
        return refresh(layout, self.lineage, data.spec.to_dict(), data.labels, stopped)

