"""The one tiny run folder of the tests: real 32 px, 3-class SqueezeNets exported by host.export and recorded in
lineage.sqlite as host-evolve records them (``labels`` and ``card`` are paths relative to the run, as real runs
store them, not JSON). host-serve serves it; device-serve and device-agent fetch from it. Needs torch (host side);
the device side's own tiny ONNX is tests/engines/tiny_onnx.py."""
from pathlib import Path

import numpy as np
import pytest

LABELS = ["cat", "dog", "fox"]
SIZE = 32


def make_tiny_run(run: Path, generations: int = 1, local_fps=100.0) -> list:
    """Export ``generations`` tiny generations (weights seeded by their number) into ``run``; their cards."""
    torch = pytest.importorskip("torch")
    from contract.preprocess import PreprocessSpec
    from host.export import export_generation
    from host.genome import Genome
    from host.lineage import Lineage
    from host.model import SqueezeNet
    genome = Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)
    lineage = Lineage(run / "lineage.sqlite")
    cards = []
    try:
        for number in range(generations):
            torch.manual_seed(number)
            folder = "gen-{:02d}".format(number)
            card = export_generation(SqueezeNet(genome), run / folder, spec=PreprocessSpec.square(SIZE),
                                     labels=LABELS, generation=number,
                                     parity_images=np.random.RandomState(number).rand(2, 3, SIZE, SIZE).astype("float32"))
            lineage.add_generation({"generation": number, "parent": number - 1 if number else None, "offspring": 0,
                                    "genome": genome.to_json(), "params": genome.params,
                                    "size_bytes": genome.size_bytes, "macs": genome.macs(SIZE), "top1": 0.5,
                                    "top5": 1.0, "train_seconds": 1.0, "env_factor": None, "lambda": None,
                                    "onnx": folder + "/model.onnx", "sha256": card["sha256"],
                                    "weights": folder + "/weights.pt", "labels": folder + "/labels.txt",
                                    "card": folder + "/card.json", "local_fps": local_fps})
            cards.append(card)
    finally:
        lineage.close()
    return cards
