"""Where everything of a run lives (one place for the run layout)."""
from __future__ import annotations

from pathlib import Path

STATIC_BATCH_ONNX = "model-b1.onnx"  # batch fixed at 1: what jetson-inference's imagenet loads as is


class RunLayout:
    """RUN/{config.json, lineage.sqlite, checkpoint.pt, summary.json, report.png, gen-XX/, cache/,
    host-evolve.lock}."""

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
    def lock(self) -> Path:
        """Held (flock) by the one host-evolve writing the run; it names that process."""
        return self.root / "host-evolve.lock"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def generation_dir(self, generation: int) -> Path:
        return self.root / f"gen-{generation:02d}"

    def offspring_weights(self, generation: int, offspring: int) -> Path:
        return self.generation_dir(generation) / f"offspring-{offspring}.pt"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))
