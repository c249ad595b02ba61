"""A tiny real run folder: 32 px, 3-class SqueezeNets exported by host.evolve.export and recorded in lineage.sqlite as
host-evolve records them (``labels`` and ``card`` are paths relative to the run, as real runs store them). The
tests serve it with host-serve and fetch it with device-serve and device-agent; the trials (trials/) run their
faults against it; a person can try host-serve on it in a second:

    python -c "from pathlib import Path; from host.evolve.tiny_run import make_tiny_run; make_tiny_run(Path('run'))"

The weights are random (seeded by the generation's number) and kept as a real run keeps them (gen-XX/offspring-0.pt):
the files are real, the accuracy is not.
"""
from pathlib import Path

import numpy as np

LABELS = ["cat", "dog", "fox"]
SIZE = 32


def make_tiny_run(run: Path, generations: int = 1, local_fps=100.0) -> list:
    """Export ``generations`` tiny generations (weights seeded by their number) into ``run``; their cards."""
    import torch
    from contract.generation_files import CARD_JSON, LABELS_TXT, MODEL_ONNX, offspring_weights
    from contract.preprocess import PreprocessSpec
    from host.evolve.checkpoints import save_model
    from host.evolve.export import export_generation
    from host.evolve.genome import Genome
    from host.run.lineage import Lineage
    from host.evolve.model import SqueezeNet
    genome = Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)
    lineage = Lineage(run / "lineage.sqlite")
    cards = []
    try:
        for number in range(generations):
            torch.manual_seed(number)
            folder = "gen-{:02d}".format(number)
            model = SqueezeNet(genome)
            (run / folder).mkdir(parents=True, exist_ok=True)
            save_model(model, run / folder / offspring_weights(0), dropout=0.5)  # as a real run keeps its weights
            card = export_generation(model, run / folder, spec=PreprocessSpec.square(SIZE),
                                     labels=LABELS, generation=number,
                                     parity_images=np.random.RandomState(number).rand(2, 3, SIZE, SIZE).astype("float32"))
            lineage.add_generation({"generation": number, "parent": number - 1 if number else None, "offspring": 0,
                                    "genome": genome.to_json(), "params": genome.params,
                                    "size_bytes": genome.size_bytes, "macs": genome.macs(SIZE), "top1": 0.5,
                                    "top5": 1.0, "train_seconds": 1.0, "env_factor": None, "lambda": None,
                                    "onnx": folder + "/" + MODEL_ONNX, "sha256": card["sha256"],
                                    "weights": folder + "/" + offspring_weights(0),
                                    "labels": folder + "/" + LABELS_TXT, "card": folder + "/" + CARD_JSON,
                                    "local_fps": local_fps})
            cards.append(card)
    finally:
        lineage.close()
    return cards
