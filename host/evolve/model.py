"""SqueezeNet v1.1 built from a genome, in torchvision's layout (so its state_dicts load as they are)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from host.errors import HostError
from host.evolve.genome import FIRE_NAMES, POOL_AFTER, Genome


class Fire(nn.Module):
    """torchvision's Fire: squeeze 1x1 -> (expand1x1 | expand3x3) concatenated on channels."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet v1.1 (torchvision's ``features``/``classifier`` indices) with the genome's widths."""

    def __init__(self, genome: Genome, dropout: float = 0.5):
        super().__init__()
        self.genome = genome
        layers: list[nn.Module] = [nn.Conv2d(3, genome.conv1, kernel_size=3, stride=2), nn.ReLU(inplace=True),
                                   nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)]
        channels = genome.conv1
        for name, (squeeze, e1, e3) in zip(FIRE_NAMES, genome.fires):
            layers.append(Fire(channels, squeeze, e1, e3))
            channels = e1 + e3
            if name in POOL_AFTER:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        conv10 = nn.Conv2d(channels, genome.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), conv10, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's initialisation (kaiming-uniform convs, conv10 normal(0, 0.01), zero biases), except
        # conv10's bias starts at 1: conv10 is followed by a ReLU, and with zero bias a from-scratch net
        # often pushes every logit below zero in its first steps and never recovers (measured: loss stuck
        # at ln N); with bias 1 the logits start alive.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is self.conv10:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                    nn.init.constant_(module.bias, 1.0)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

    @property
    def conv10(self) -> nn.Conv2d:
        return self.classifier[1]

    def named_layers(self) -> dict[str, nn.Conv2d]:
        """{'conv1': conv, 'fire2.squeeze': conv, ..., 'conv10': conv} in network order."""
        layers = {"conv1": self.features[0]}
        fires = [m for m in self.features if isinstance(m, Fire)]
        for name, fire in zip(FIRE_NAMES, fires):
            layers[f"{name}.squeeze"] = fire.squeeze
            layers[f"{name}.expand1x1"] = fire.expand1x1
            layers[f"{name}.expand3x3"] = fire.expand3x3
        layers["conv10"] = self.conv10
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def load_pretrained(model: SqueezeNet, path: str | Path) -> str:
    """Load a torchvision-layout ``squeezenet1_1`` state_dict from a local file; conv10 stays freshly initialised.

    Every other tensor must match the model's shape (the ancestor has SqueezeNet v1.1's widths). Checkpoints
    wrapped by training scripts (``{"model": ...}``, ``{"state_dict": ...}``) and keys prefixed by DataParallel
    (``module.``) or torch.compile (``_orig_mod.``) are unwrapped first (:func:`unwrap_state_dict`). Returns
    what was unwrapped ("" for a plain state_dict); raises HostError naming the file and what it holds.
    """
    path = Path(path)
    if not path.is_file():
        raise HostError(f"--pretrained {path}: no such file. Give a torchvision-layout squeezenet1_1 state_dict, "
                        "e.g. ../shared/weights/squeezenet1_1_imagenet.pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean the same to the user
        raise HostError(f"--pretrained {path} is not a readable torch state_dict: it {unloadable_reason(path)}; give "
                        "a torchvision-layout squeezenet1_1 state_dict, e.g. ../shared/weights/squeezenet1_1_imagenet.pth") \
            from error
    own = model.state_dict()
    wanted = {k: v for k, v in own.items() if not k.startswith("classifier.1.")}
    state, how = unwrap_state_dict(state, wanted)
    if state is None:
        raise HostError(f"--pretrained {path} holds {how}, not a state_dict of tensors; save "
                        "model.state_dict() (torchvision's squeezenet1_1 layout), e.g. "
                        "../shared/weights/squeezenet1_1_imagenet.pth")
    missing = [k for k in wanted if k not in state]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in wanted.items() if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise HostError(f"--pretrained {path} does not fit SqueezeNet v1.1's layout{how}: "
                        f"{_layout_cause(state, missing, wrong)}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return how.strip(" ()")


#: What torch's own pickles name besides tensors: these make a state_dict, anything else is an object of code
PLAIN_GLOBALS = ("torch._utils", "torch.", "collections", "builtins", "_codecs", "numpy.core.multiarray._reconstruct",
                 "numpy.dtype", "numpy.ndarray")


def unloadable_reason(path: Path) -> str:
    """Why a file torch.load(weights_only=True) refused is not a state_dict, in the user's terms and read without
    running any of it ("it ..."): "holds a whole pickled object (torchvision.models.squeezenet.SqueezeNet) ..." (the first
    class its pickle names that is not a tensor's, found by pickletools.genops), "is not a file torch.save wrote",
    "is empty". Never torch's own text (its advice to unpickle the file is not for a file we do not know)."""
    import pickletools
    import zipfile
    try:
        if path.stat().st_size == 0:
            return "is empty"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return "is a zip archive that torch.save did not write"
                data = archive.read(name)
        else:
            data = path.read_bytes()
        classes, strings = [], []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                classes.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                classes.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(argument, str):
                strings.append(argument)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    except Exception:  # not a pickle at all: genops stops at the first byte it does not know
        return "is not a file torch.save wrote (neither its zip format nor a pickle)"
    code = [name for name in classes if not name.startswith(PLAIN_GLOBALS)]
    if code:
        return (f"holds a whole pickled object ({code[0]}), saved with torch.save(model), not a state_dict of "
                "tensors; host-evolve runs no code from a file: save the weights with "
                "torch.save(model.state_dict(), 'weights.pth')")
    return "is a torch file that does not load as plain tensors (weights_only=True)"


#: Keys under which training scripts wrap a state_dict: torchvision's reference train.py ("model"), Lightning and
#: many others ("state_dict"), the PyTorch tutorials ("model_state_dict"), timm's EMA ("state_dict_ema").
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema", "net", "network",
                "weights", "module")
#: Prefixes that wrappers add to every key: nn.DataParallel / DistributedDataParallel ("module."),
#: torch.compile ("_orig_mod."), and a model held as an attribute ("model.", "net.", "backbone.").
SHARED_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")


def _is_tensor_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def unwrap_state_dict(state, wanted) -> tuple[dict | None, str]:
    """(a flat state_dict, how it was found) from what ``torch.load`` returned; (None, what it is) when there
    is no state_dict of tensors in it.

    A checkpoint dict is unwrapped through WRAPPER_KEYS (the first whose value holds tensors), and prefixes
    every key shares (SHARED_PREFIXES, nested as ``module._orig_mod.``) are stripped unless the keys already
    fit ``wanted``. ``how`` is "" for a plain state_dict, else e.g. " (unwrapped 'model', stripped 'module.')".
    """
    notes = []
    if not isinstance(state, dict):
        return None, f"a {type(state).__name__}"
    for _ in range(3):  # {"model": {"state_dict": ...}} exists too
        if _is_tensor_dict(state):
            break
        inner = next((k for k in WRAPPER_KEYS if isinstance(state.get(k), dict) and state[k]), None)
        if inner is None:
            keys = ", ".join(repr(k) for k in list(state)[:6]) or "nothing"
            return None, f"a dict of {keys}"
        notes.append(f"unwrapped {inner!r}")
        state = state[inner]
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        return None, "a dict without tensors"
    for _ in range(4):
        if any(k in state for k in wanted):
            break
        prefix = next((p for p in SHARED_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        notes.append(f"stripped {prefix!r}")
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state, f" ({', '.join(notes)})" if notes else ""


def _layout_cause(state: dict, missing: list[str], wrong: list[str]) -> str:
    """Why a state_dict does not fit, in the terms of what it holds."""
    conv1 = state.get("features.0.weight")
    if conv1 is not None and tuple(conv1.shape[:1] + conv1.shape[2:]) == (96, 7, 7):
        return ("its conv1 is 96 x 7 x 7, SqueezeNet v1.0's; use torchvision's squeezenet1_1 weights (not 1.0), "
                "e.g. ../shared/weights/squeezenet1_1_imagenet.pth")
    if missing and not any(k.startswith(("features.", "classifier.")) for k in state):
        keys = ", ".join(list(state)[:4])
        return (f"none of its {len(state)} tensors is named like torchvision's SqueezeNet (features.N..., "
                f"classifier.1...); it holds {keys}, ...: another network, or a layout this loader does not "
                "know; give torchvision's squeezenet1_1 state_dict")
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if wrong:
        parts.append(f"mismatched {wrong[:5]}")
    return "; ".join(parts) + ": another network's weights; give torchvision's squeezenet1_1 state_dict"
