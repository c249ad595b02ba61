"""bench/paired.py: McNemar's exact test, checked against values worked by hand and the binomial's symmetry."""
import importlib
import math

import pytest

from tests.conftest import CIFAR_MINI, needs


def paired():
    return importlib.import_module("bench.paired")


def test_mcnemar_exact_matches_the_binomial_by_hand():
    module = paired()
    assert module.mcnemar_exact(0, 0) == 1.0
    assert module.mcnemar_exact(5, 5) == 1.0  # no lead: capped at 1
    assert module.mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 x (1/2)^6
    assert module.mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert module.mcnemar_exact(2, 10) == module.mcnemar_exact(10, 2)
    big = module.mcnemar_exact(60, 30)
    assert 0.001 < big < 0.01 and big == pytest.approx(2 * sum(math.comb(90, i) for i in range(31)) / 2 ** 90)


@needs(CIFAR_MINI)
def test_the_same_model_twice_has_no_lead(tmp_path, capsys):
    """On real JPEGs (cifar10-mini) and a real model file: A against itself, nothing discordant, p = 1."""
    import json
    import torch
    from host.evolve.checkpoints import save_model
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet
    from host.evolve.data import scan_folder
    classes = len(scan_folder(CIFAR_MINI, 0.1, 0).labels)
    torch.manual_seed(0)
    save_model(SqueezeNet(Genome.squeezenet1_1(classes)).eval(), tmp_path / "a.pt", 0.5)
    code = paired().main([str(tmp_path / "a.pt"), str(tmp_path / "a.pt"), "--data", str(CIFAR_MINI), "--image-size", "32",
                          "--cache", str(tmp_path / "cache")])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["only_a"] == result["only_b"] == 0 and result["p_mcnemar_exact"] == 1.0
    assert result["top1_a"] == result["top1_b"] and result["images"] > 0
