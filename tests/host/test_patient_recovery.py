"""--recovery patient: the final recovery as function matching (Beyer et al. 2022: KL to the teacher alone, the
same mixed-up view for teacher and student); its pieces on real tensors, then a real host-evolve run."""
import copy
import json

import numpy as np
import pytest
import torch

from contract.preprocess import PreprocessSpec
from host.evolve.data import CachedImages
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from host.evolve.train import TrainSettings, make_optimizer, mixup, steps_per_epoch, train_one_epoch
from tests.host.commands import flags, host_evolve
from tests.host.settings import MECHANICS

SHAPES = (10, 36)


def test_mixup_blends_each_image_with_a_seeded_partner():
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).repeat(1, 3, 2, 2)
    a = mixup(x, np.random.default_rng(5), 1.0)
    b = mixup(x, np.random.default_rng(5), 1.0)
    assert torch.equal(a, b)  # the same seed, the same batch: a resumed epoch repeats itself
    rng = np.random.default_rng(5)
    share, partners = float(rng.beta(1.0, 1.0)), rng.permutation(4)
    expected = share * x + (1 - share) * x[torch.from_numpy(partners)]
    assert torch.allclose(a, expected)
    assert float(a.min()) >= 0 and float(a.max()) <= 3  # a convex blend stays between its images
    assert not torch.equal(a, x)


def tiny_split(count=32, size=32, classes=3):
    rng = np.random.default_rng(0)
    return CachedImages(rng.integers(0, 255, (count, size, size, 3), dtype=np.uint8),
                        np.arange(count, dtype=np.int64) % classes, [f"{i}.png" for i in range(count)], [])


def epoch_loss(settings, teacher_is_student=True):
    torch.manual_seed(0)
    model = SqueezeNet(Genome.from_layer_widths(3, {**Genome.squeezenet1_1(3).layer_widths(), "conv1": 16}),
                       dropout=0.0)
    teacher = copy.deepcopy(model) if teacher_is_student else SqueezeNet(model.genome, dropout=0.0)
    data = tiny_split()
    optimizer, scheduler = make_optimizer(model, settings, steps_per_epoch(len(data), settings.batch_size))
    return train_one_epoch(model, data, PreprocessSpec(32, 32), optimizer, scheduler, settings, 0,
                           torch.device("cpu"), teacher=teacher)["loss"]


def test_distillation_alone_matches_the_teachers_function_and_nothing_else():
    patient = TrainSettings(epochs=1, batch_size=16, lr=1e-4, distill_only=True, mixup_alpha=1.0)
    # a student that is its teacher, on the same mixed view, has nothing to learn: the loss is the KL alone
    assert epoch_loss(patient) == pytest.approx(0.0, abs=1e-6)
    assert epoch_loss(patient, teacher_is_student=False) > 1e-4
    standard = TrainSettings(epochs=1, batch_size=16, lr=1e-4, distill_weight=0.5, mixup_alpha=1.0)
    assert epoch_loss(standard) > 0.3  # the labels' cross-entropy is in it


def test_a_run_with_the_patient_recovery(shapes, tmp_path):
    run = tmp_path / "run"
    result = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=run, generations=1, final_epochs=1,
                                       recovery="patient")))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert [g["generation"] for g in summary["generations"]] == [0, 1, 2]
    assert json.loads((run / "config.json").read_text())["recovery"] == "patient"
    refused = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=tmp_path / "r2", recovery="gentle")))
    assert refused.returncode == 2 and "invalid choice: 'gentle'" in refused.stderr
