"""Coupled-channel surgery: weights inherited exactly, the fire concat offset handled."""
import numpy as np
import torch

from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from host.evolve.surgery import cluster_strengths, inherit, input_indices
from host.evolve.synthesis import sample_offspring

GENOME = Genome(num_classes=4, conv1=16, fires=((4, 8, 8), (6, 10, 6), (8, 12, 12), (4, 8, 8),
                                                (6, 8, 10), (6, 8, 8), (8, 16, 16), (8, 12, 20)))


def make_parent(seed=0):
    torch.manual_seed(seed)
    model = SqueezeNet(GENOME).eval()
    with torch.no_grad():  # non-zero biases everywhere, so a wrong bias slice shows
        for conv in model.named_layers().values():
            conv.bias.uniform_(0.0, 0.1)
    return model


def keep_all(model):
    """Every filter of every layer kept: the child must be the parent."""
    return {name: np.arange(len(s)) for name, s in cluster_strengths(model).items()}


def zero_dropped(model, kept):
    """The parent with dropped filters silenced (weight and bias 0: after ReLU they output exactly 0)."""
    silenced = make_parent()
    silenced.load_state_dict(model.state_dict())
    layers = silenced.named_layers()
    with torch.no_grad():
        for name, idx in kept.items():
            dropped = np.setdiff1d(np.arange(layers[name].out_channels), idx)
            layers[name].weight[dropped] = 0
            layers[name].bias[dropped] = 0
    return silenced


def test_keeping_every_filter_reproduces_the_parent_exactly():
    parent = make_parent()
    child = inherit(parent, keep_all(parent)).eval()
    x = torch.randn(3, 3, 64, 64)
    assert child.genome == parent.genome
    assert torch.equal(child(x), parent(x))


def test_dropping_one_expand3x3_filter_removes_the_right_input_channel_of_the_next_squeeze():
    parent = make_parent()
    kept = keep_all(parent)
    kept["fire3.expand3x3"] = np.delete(np.arange(6), 2)  # drop expand3x3 filter 2 of fire3
    child = inherit(parent, kept)
    # fire3's concat is [expand1x1 (10) | expand3x3 (6)]: the dropped filter was fire4.squeeze's input 10 + 2
    expected = torch.cat([parent.features[6].squeeze.weight[:, :12], parent.features[6].squeeze.weight[:, 13:]], 1)
    assert child.genome.fires[1] == (6, 10, 5)
    assert child.features[6].squeeze.weight.shape[1] == 15
    assert torch.equal(child.features[6].squeeze.weight, expected)
    assert list(input_indices(GENOME, kept)["fire4.squeeze"]) == list(range(12)) + list(range(13, 16))


def test_dropping_in_fire9_narrows_conv10_at_the_concat_offset():
    parent = make_parent()
    kept = keep_all(parent)
    kept["fire9.expand1x1"] = np.array([0, 5])
    kept["fire9.expand3x3"] = np.array([1, 19])
    child = inherit(parent, kept)
    assert torch.equal(child.conv10.weight, parent.conv10.weight[:, [0, 5, 12 + 1, 12 + 19]])


def test_any_sampled_offspring_computes_what_the_silenced_parent_computes():
    parent = make_parent()
    strengths = cluster_strengths(parent)
    x = torch.randn(2, 3, 48, 48)
    for seed in range(5):
        kept = sample_offspring(strengths, 0.6, np.random.default_rng(seed))
        child = inherit(parent, kept).eval()
        assert child.genome.params < parent.genome.params
        torch.testing.assert_close(child(x), zero_dropped(parent, kept)(x), rtol=1e-5, atol=1e-5)
