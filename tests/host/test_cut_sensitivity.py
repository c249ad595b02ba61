"""host/surgery.consumer_strengths and bench/cut_sensitivity.py: the consumer-side importance reads the right weights (a channel nobody reads
scores 0, across the fire concat and into conv10), and the whole command runs on real JPEGs and writes its
tables, JSON and plot."""
import importlib
import json

import numpy as np
import pytest
import torch

from host.evolve.checkpoints import save_model
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from host.evolve.surgery import cluster_strengths, consumer_strengths
from tests.conftest import CIFAR_MINI, needs


def module():
    return importlib.import_module("bench.cut_sensitivity")


def model():
    torch.manual_seed(0)
    return SqueezeNet(Genome.squeezenet1_1(10)).eval()


def test_a_channel_no_layer_reads_has_no_consumer_strength():
    net = model()
    layers = net.named_layers()
    e1 = layers["fire2.expand1x1"].out_channels
    with torch.no_grad():
        layers["fire3.squeeze"].weight[:, e1 + 5] = 0  # fire2.expand3x3's channel 5, after the concat
        layers["fire4.expand1x1"].weight[:, 2] = 0  # fire4.squeeze's channel 2: both expands read it
        layers["fire4.expand3x3"].weight[:, 2] = 0
        layers["conv10"].weight[:, 3] = 0  # fire9.expand1x1's channel 3
        layers["fire2.squeeze"].weight[:, 7] = 0  # conv1's channel 7
    scores = consumer_strengths(net)
    assert {name: len(v) for name, v in scores.items()} == {n: c.out_channels for n, c in layers.items() if n != "conv10"}
    for name, channel in [("fire2.expand3x3", 5), ("fire4.squeeze", 2), ("fire9.expand1x1", 3), ("conv1", 7)]:
        assert scores[name][channel] == 0
        assert np.count_nonzero(scores[name]) == len(scores[name]) - 1
    layers["fire4.expand3x3"].weight.data[:, 2] = 1.0  # one reader left: the channel counts again
    assert consumer_strengths(net)["fire4.squeeze"][2] > 0
    assert cluster_strengths(net, "consumer")["fire4.squeeze"][2] == consumer_strengths(net)["fire4.squeeze"][2]
    with pytest.raises(ValueError, match="filter, consumer"):
        cluster_strengths(net, "group")


def test_kept_by_keeps_the_highest_scores_in_order():
    kept = module().kept_by({"a": np.array([0.1, 5.0, 3.0, 0.2])}, {"a": 2})
    assert kept["a"].tolist() == [1, 2]


@needs(CIFAR_MINI)
def test_the_command_writes_its_tables_json_and_plot(tmp_path, capsys):
    path = tmp_path / "offspring-0.pt"
    save_model(model(), path, 0.5)
    out = tmp_path / "cut"
    assert module().main(["--ancestor", str(path), "--data", str(CIFAR_MINI), "--image-size", "32",
                          "--shares", "1.0", "0.8", "--env-factors", "0.8", "--draws", "1",
                          "--out", str(out)]) == 0
    result = json.loads((out / "cut-sensitivity.json").read_text())
    assert [row["share"] for row in result["whole_net"]] == [1.0, 0.8]
    full, cut = result["whole_net"]
    assert full["params"] == result["params"] and cut["params"] < full["params"]
    assert full["filter L1"] == full["consumer L1"] == result["ancestor_top1"]  # nothing cut: the same net
    assert len(result["one_layer"]) == 25 and (out / "cut-sensitivity.png").stat().st_size > 10_000
    assert [(r["strength"], r["env_factor"]) for r in result["heredity"]] == [("filter", 0.8), ("consumer", 0.8)]
    assert all(r["params"] < result["params"] for r in result["heredity"])
    printed = capsys.readouterr().out
    assert "| layer cut alone to 0.75 |" in printed and "| 0.80 | consumer |" in printed
