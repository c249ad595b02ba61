"""The genome: the width of every conv of SqueezeNet v1.1, and what follows from it.

Parameters, fp32 size and MACs are computed here from the widths alone (no torch), and checked
against the built module in the tests. Layer names follow the paper and torchvision:
conv1, fire2..fire9 (squeeze, expand1x1, expand3x3), conv10.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from contract.errors import ContractError
from contract.squeezenet_graph import FIRE_NAMES, FIRE_PARTS, POOL_AFTER, conv_rows  # noqa: F401 (re-exported)
from host.errors import HostError
#: SqueezeNet v1.1's widths: conv1 64; fire2..9 (squeeze, expand1x1, expand3x3).
SQUEEZENET_1_1_FIRES = ((16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
                        (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))
BYTES_PER_PARAM = 4  # fp32; MB = 1e6 bytes, as the paper counts


@dataclass(frozen=True)
class Genome:
    """Widths of every prunable conv. conv10 always has ``num_classes`` outputs, conv1 3 inputs."""
    num_classes: int
    conv1: int = 64
    fires: tuple = SQUEEZENET_1_1_FIRES  # 8 x (squeeze, expand1x1, expand3x3)

    def __post_init__(self):
        if self.num_classes < 2:
            raise HostError(f"a genome needs at least 2 classes, got {self.num_classes}")
        if len(self.fires) != 8 or any(len(f) != 3 for f in self.fires):
            raise HostError(f"a genome needs 8 fire modules of (squeeze, expand1x1, expand3x3), got {self.fires}")
        object.__setattr__(self, "fires", tuple(tuple(int(w) for w in f) for f in self.fires))
        for name, width in self.layer_widths().items():
            if width < 1:
                raise HostError(f"layer {name} has width {width}: every layer needs at least one filter")

    # -- naming --------------------------------------------------------------------------------
    def layer_widths(self) -> dict:
        """{'conv1': 64, 'fire2.squeeze': 16, ...} for every prunable layer, in network order."""
        widths = {"conv1": self.conv1}
        for name, fire in zip(FIRE_NAMES, self.fires):
            for part, width in zip(FIRE_PARTS, fire):
                widths[f"{name}.{part}"] = width
        return widths

    @classmethod
    def from_layer_widths(cls, num_classes: int, widths: dict) -> "Genome":
        fires = tuple(tuple(widths[f"{name}.{part}"] for part in FIRE_PARTS) for name in FIRE_NAMES)
        return cls(num_classes=num_classes, conv1=widths["conv1"], fires=fires)

    @classmethod
    def squeezenet1_1(cls, num_classes: int) -> "Genome":
        """SqueezeNet v1.1 with conv10 -> ``num_classes`` (the paper's modification)."""
        return cls(num_classes=num_classes)

    def to_dict(self) -> dict:
        return {"num_classes": self.num_classes, "conv1": self.conv1, "fires": [list(f) for f in self.fires]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "Genome":
        return cls(num_classes=data["num_classes"], conv1=data["conv1"], fires=tuple(map(tuple, data["fires"])))

    # -- what follows from the widths ----------------------------------------------------------
    def convs(self, image_size: int = 224) -> list:
        """Every conv as (name, in_channels, out_channels, kernel, output_height, output_width)."""
        return _convs(self.num_classes, self.conv1, self.fires, image_size)

    @property
    def params(self) -> int:
        return int(sum(cin * cout * k * k + cout for _, cin, cout, k, _, _ in self.convs()))

    @property
    def size_bytes(self) -> int:
        return self.params * BYTES_PER_PARAM

    def macs(self, image_size: int) -> int:
        """Multiply-accumulates of the convs at ``image_size`` (pools, ReLUs and biases are not counted)."""
        return int(sum(cin * cout * k * k * h * w for _, cin, cout, k, h, w in self.convs(image_size)))


def _convs(num_classes, conv1, fires, image_size):
    """Shared by integer genomes and by real-valued expected widths (synthesis uses both): contract's
    conv_rows (the one definition the latency table uses too) as (name, cin, cout, kernel, height, width)."""
    try:
        rows = conv_rows(num_classes, conv1, fires, image_size)
    except ContractError as error:
        raise HostError(str(error)) from error
    return [(r.name, r.cin, r.cout, r.kernel, r.side_out, r.side_out) for r in rows]


def expected_cost(num_classes: int, widths: dict, image_size: int, kind: str) -> float:
    """Params or MACs of a network whose widths may be real numbers (expected widths).

    Both are sums of products of *adjacent* layers' widths, so for independently sampled layers
    E[cost(widths)] = cost(E[widths]) exactly: the expectation passes through.
    """
    fires = [tuple(widths[f"{name}.{part}"] for part in FIRE_PARTS) for name in FIRE_NAMES]
    rows = _convs(num_classes, widths["conv1"], fires, image_size)
    if kind == "params":
        return float(sum(cin * cout * k * k + cout for _, cin, cout, k, _, _ in rows))
    if kind == "macs":
        return float(sum(cin * cout * k * k * h * w for _, cin, cout, k, h, w in rows))
    raise HostError(f"unknown budget kind {kind!r}: use 'params' or 'macs'")
