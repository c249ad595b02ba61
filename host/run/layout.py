"""Where everything of a run lives (one place for the run layout)."""
from __future__ import annotations

from pathlib import Path

from contract.generation_files import offspring_weights

SPEED_PROBE_ONNX = "offspring-speed.onnx"  # RUN/, not a generation's file: removed after each use



class RunLayout:
    """RUN/{config.json, lineage.sqlite, checkpoint.pt, summary.json, report.png, gen-XX/, cache/,
    latency-table.json, host-evolve.lock}."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def lineage(self) -> Path:
        return self.root / "lineage.sqlite"

    @property
    def checkpoint(self) -> Path:
        """The offspring in training: weights, optimiser and schedule after its last finished epoch."""
        return self.root / "checkpoint.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def report(self) -> Path:
        return self.root / "report.png"

    @property
    def latency_table(self) -> Path:
        """The latency table --budget latency steered by (contract/latency_table.py), as it was read."""
        return self.root / "latency-table.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one host-evolve writing the run; it names that process."""
        return self.root / "host-evolve.lock"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def speed_probe(self) -> Path:
        """The ONNX of an offspring not yet exported, timed for --fps-weight's fitness (a temporary file)."""
        return self.root / SPEED_PROBE_ONNX

    def generation_dir(self, generation: int) -> Path:
        return self.root / f"gen-{generation:02d}"

    def offspring_weights(self, generation: int, offspring: int) -> Path:
        return self.generation_dir(generation) / offspring_weights(offspring)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))
