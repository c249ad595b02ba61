"""Model surgery: build the offspring from the parent's kept filters, with coupled channels handled.

The couplings of SqueezeNet, explicit:
- conv1's outputs feed fire2.squeeze (the max-pool passes channels through);
- a squeeze feeds both expands of its fire;
- the concat [expand1x1 | expand3x3] of a fire feeds the next squeeze (or conv10), so expand3x3's
  filter j is input channel ``expand1x1_width + j`` of the consumer: the concat offset.
"""
from __future__ import annotations

import numpy as np
import torch

from host.evolve.genome import FIRE_NAMES, Genome
from host.evolve.model import SqueezeNet
from host.evolve.synthesis import STRENGTHS


def cluster_strengths(model: SqueezeNet, kind: str = "filter") -> dict[str, np.ndarray]:
    """Strength of every synaptic cluster (output filter) of every prunable conv, {layer: (filters,)} float64.

    ``kind`` "filter" (the paper's): sum of |w| over the filter, its incoming synapses. "consumer": sum of |w|
    of the synapses that read its output channel downstream (:func:`consumer_strengths`). Right after a cut,
    before any training, a trained 112 px ancestor keeping 90 % of every layer's filters by "consumer" scored
    56.7 % top-1 against 25.1 % by "filter" (80 %: 29.5 against 10.6; bench/cut_sensitivity.py,
    docs/benchmarks.md section 9f). Raises ValueError for another ``kind``.
    """
    if kind == "consumer":
        return consumer_strengths(model)
    if kind != "filter":
        raise ValueError(f"strength kind {kind!r}: choose one of {', '.join(STRENGTHS)}")
    return {name: conv.weight.detach().abs().sum(dim=(1, 2, 3)).double().cpu().numpy()
            for name, conv in model.named_layers().items() if name != "conv10"}


def consumer_strengths(model: SqueezeNet) -> dict[str, np.ndarray]:
    """For every prunable conv's output channel: sum |w| of the input weights that read it downstream (the
    couplings above: conv1 -> fire2.squeeze; a squeeze -> both its expands; a fire's concat -> the next squeeze,
    or conv10 after fire9). How much the rest of the net uses a filter: the consumer half of Torch-Pruning's
    group importance. {layer: (out_channels,)} float64, like :func:`cluster_strengths`."""
    layers = model.named_layers()

    def reads(name: str) -> np.ndarray:  # per input channel of ``name``
        return layers[name].weight.detach().abs().sum(dim=(0, 2, 3)).double().cpu().numpy()

    out = {"conv1": reads(f"{FIRE_NAMES[0]}.squeeze")}
    for index, fire in enumerate(FIRE_NAMES):
        out[f"{fire}.squeeze"] = reads(f"{fire}.expand1x1") + reads(f"{fire}.expand3x3")
        consumer = f"{FIRE_NAMES[index + 1]}.squeeze" if index + 1 < len(FIRE_NAMES) else "conv10"
        concat, e1 = reads(consumer), layers[f"{fire}.expand1x1"].out_channels
        out[f"{fire}.expand1x1"], out[f"{fire}.expand3x3"] = concat[:e1], concat[e1:]
    return out


def input_indices(genome: Genome, kept: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For every conv, the parent's input channels that survive, given each producer's kept filters."""
    inputs = {"conv1": np.arange(3)}
    producer = kept["conv1"]
    for name, (_, e1_width, _) in zip(FIRE_NAMES, genome.fires):
        inputs[f"{name}.squeeze"] = producer
        inputs[f"{name}.expand1x1"] = kept[f"{name}.squeeze"]
        inputs[f"{name}.expand3x3"] = kept[f"{name}.squeeze"]
        # the concat: expand3x3's channels come after all of the *parent's* expand1x1 channels
        producer = np.concatenate([kept[f"{name}.expand1x1"], e1_width + kept[f"{name}.expand3x3"]])
    inputs["conv10"] = producer
    return inputs


def inherit(parent: SqueezeNet, kept: dict[str, np.ndarray]) -> SqueezeNet:
    """A new network with only the kept filters, each with the weights it had in the parent."""
    genome = parent.genome
    child_genome = Genome.from_layer_widths(genome.num_classes, {name: len(idx) for name, idx in kept.items()})
    child = SqueezeNet(child_genome, dropout=parent.classifier[0].p)
    inputs = input_indices(genome, kept)
    parent_layers, child_layers = parent.named_layers(), child.named_layers()
    with torch.no_grad():
        for name, conv in parent_layers.items():
            out_idx = torch.as_tensor(kept[name] if name in kept else np.arange(conv.out_channels), dtype=torch.long)
            in_idx = torch.as_tensor(inputs[name], dtype=torch.long)
            child_layers[name].weight.copy_(conv.weight[out_idx][:, in_idx])
            child_layers[name].bias.copy_(conv.bias[out_idx])
    return child
