"""Model and checkpoint files: one format, written whole or not at all, read back with ``weights_only`` (load_weights,
load_checkpoint; bench/peers.py's step files are model files too).

A *model file* (``RUN/gen-XX/offspring-K.pt``, bench/peers.py's steps) is ``{"genome": Genome.to_dict(),
"model": state_dict, "dropout": p}`` plus optional plain extras (numbers, strings); a *training checkpoint*
(``RUN/checkpoint.pt``) is the offspring in training after its last finished epoch: the model file's keys plus
``optimizer``, ``scheduler``, ``epochs_done``, ``history``, ``lambda``, ``lr_scale`` and where it belongs.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from contract.files import atomic_write
from host.errors import HostError
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet


def atomic_torch_save(obj, path) -> None:
    """torch.save, whole or not at all (a checkpoint is a few MB: serialised in memory, then written)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def save_model(model: SqueezeNet, path, dropout: float, **extra) -> None:
    """A model file: genome, weights, dropout (and ``extra`` plain values), written atomically."""
    atomic_torch_save({"genome": model.genome.to_dict(), "model": model.state_dict(), "dropout": dropout, **extra},
                      path)


def load_weights(path, device, dropout: float | None = None) -> SqueezeNet:
    """A model file (genome, weights, dropout: plain tensors and numbers, so weights_only); ``dropout``
    overrides the file's."""
    return load_model_file(path, device, dropout)[0]


def load_model_file(path, device, dropout: float | None = None) -> tuple[SqueezeNet, dict]:
    """A model file read once: (the model on ``device``, the file's plain contents with its extras: key, top1,
    parent, ... as bench/peers.py's steps write them). ``dropout`` overrides the file's."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = SqueezeNet(Genome.from_dict(state["genome"]),
                       dropout=state.get("dropout", 0.5) if dropout is None else dropout)
    model.load_state_dict(state["model"])
    return model.to(device), state


def load_checkpoint(path) -> dict:
    """A training checkpoint (``RUN/checkpoint.pt``: the module docstring's keys), as written by
    host/evolve/recorder.py: tensors, numbers, strings, lists and dicts only, so read with ``weights_only``. Raises
    what torch.load raises for a damaged or foreign file (host/evolve/run_folder.py turns that into one line)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_ancestor(path, labels: list[str], dropout: float) -> SqueezeNet:
    """--ancestor-from: a host-evolve model file (genome + weights) for ``labels``, refused by name when it
    is not one, has another number of classes, or its generation's labels.txt names other classes."""
    path = Path(path)
    fix = "give a host-evolve model file, e.g. RUN/gen-00/offspring-0.pt of a run on the same classes"
    if not path.is_file():
        raise HostError(f"--ancestor-from {path}: no such file; {fix}")
    try:
        model = load_weights(path, "cpu", dropout)
    except Exception as error:  # torch, Genome and load_state_dict raise many types; all mean "not one of ours"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise HostError(f"--ancestor-from {path} is not a host-evolve model file ({reason}); {fix}") from error
    if model.genome.num_classes != len(labels):
        raise HostError(f"--ancestor-from {path} classifies {model.genome.num_classes} classes, the data has "
                        f"{len(labels)}; {fix}")
    beside = path.parent / "labels.txt"
    if beside.is_file():
        theirs = [line.strip() for line in beside.read_text(encoding="utf-8").splitlines() if line.strip()]
        if theirs and theirs != list(labels):
            raise HostError(f"--ancestor-from {path}: its {beside} names other classes or another order "
                            f"({', '.join(theirs[:3])}, ...) than the data ({', '.join(labels[:3])}, ...); {fix}")
    return model
