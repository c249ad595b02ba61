"""Model and checkpoint files: one format, written whole or not at all, read back with ``weights_only`` (load_weights,
load_checkpoint; bench/peers.py's step files are model files too).

A *model file* (``RUN/gen-XX/offspring-K.pt``, bench/peers.py's steps) is ``{"genome": Genome.to_dict(),
"model": state_dict, "dropout": p}`` plus optional plain extras (numbers, strings); a *training checkpoint*
(``RUN/checkpoint.pt``) is the offspring in training after its last finished epoch: the model file's keys plus
``optimizer``, ``scheduler``, ``epochs_done``, ``history``, ``lambda``, ``lr_scale`` and where it belongs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from contract.files import atomic_write
from contract.generation_files import LABELS_TXT, offspring_weights
from host.errors import HostError
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet, unloadable_reason


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


@dataclass
class TrainingState:
    """An offspring in training after ``epochs_done`` finished epochs: what RUN/checkpoint.pt holds, read and
    written only here (:meth:`to_checkpoint`, :func:`read_training_state`). ``optimizer`` and ``scheduler``:
    their state dicts (None before the first epoch); ``history``: one stats dict per finished epoch;
    ``lr_scale``: the share of the peak rate that worked (halved per divergence retry); ``choice``: how the
    offspring was chosen (selection's proxy images and candidates)."""
    generation: int
    offspring: int
    model: SqueezeNet
    lam: float | None
    epochs_done: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)
    lr_scale: float = 1.0
    choice: dict = field(default_factory=dict)
    optimizer: dict | None = None
    scheduler: dict | None = None

    def to_checkpoint(self) -> dict:
        """The training checkpoint's dict (the module docstring's keys): plain tensors, numbers and lists."""
        return {"generation": self.generation, "offspring": self.offspring, "epochs_done": self.epochs_done,
                "genome": self.model.genome.to_dict(), "model": self.model.state_dict(),
                "optimizer": self.optimizer, "scheduler": self.scheduler, "lambda": self.lam,
                "train_seconds": self.train_seconds, "history": self.history, "lr_scale": self.lr_scale,
                "choice": self.choice}


def read_training_state(checkpoint: dict, dropout: float) -> TrainingState:
    """The one reader of a training checkpoint's dict (:func:`load_checkpoint`'s result): the model rebuilt from
    its genome with ``dropout``, its weights loaded (on the CPU)."""
    model = SqueezeNet(Genome.from_dict(checkpoint["genome"]), dropout=dropout)
    model.load_state_dict(checkpoint["model"])
    return TrainingState(generation=checkpoint["generation"], offspring=checkpoint["offspring"], model=model,
                         lam=checkpoint["lambda"], epochs_done=checkpoint["epochs_done"],
                         train_seconds=checkpoint["train_seconds"], history=list(checkpoint["history"]),
                         lr_scale=checkpoint.get("lr_scale", 1.0), choice=checkpoint.get("choice", {}),
                         optimizer=checkpoint["optimizer"], scheduler=checkpoint["scheduler"])


def load_ancestor(path, labels: list[str], dropout: float) -> SqueezeNet:
    """--ancestor-from: a host-evolve model file (genome + weights) for ``labels``, refused by name when it
    is not one, has another number of classes, or its generation's labels.txt names other classes."""
    path = Path(path)
    fix = f"give a host-evolve model file, e.g. RUN/gen-00/{offspring_weights(0)} of a run on the same classes"
    if not path.is_file():
        raise HostError(f"--ancestor-from {path}: no such file; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file: said in the user's terms, not torch's
        raise HostError(f"--ancestor-from {path} is not a host-evolve model file: it {unloadable_reason(path)}; "
                        f"{fix}") from error
    try:
        model = SqueezeNet(Genome.from_dict(state["genome"]), dropout=dropout)
        model.load_state_dict(state["model"])
    except Exception as error:  # Genome and load_state_dict raise many types; all mean "not one of ours"
        held = f"a dict of {', '.join(sorted(map(str, state))[:4])}" if isinstance(state, dict) else type(state).__name__
        raise HostError(f"--ancestor-from {path} is not a host-evolve model file (it holds {held}, no genome and "
                        f"weights of this project); {fix}") from error
    if model.genome.num_classes != len(labels):
        raise HostError(f"--ancestor-from {path} classifies {model.genome.num_classes} classes, the data has "
                        f"{len(labels)}; {fix}")
    beside = path.parent / LABELS_TXT
    if beside.is_file():
        theirs = [line.strip() for line in beside.read_text(encoding="utf-8").splitlines() if line.strip()]
        if theirs and theirs != list(labels):
            raise HostError(f"--ancestor-from {path}: its {beside} names other classes or another order "
                            f"({', '.join(theirs[:3])}, ...) than the data ({', '.join(labels[:3])}, ...); {fix}")
    return model
