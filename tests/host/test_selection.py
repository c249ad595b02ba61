"""host/evolve/selection.py: the proxy set, the fidelity score, Spearman's rho, the heredity model's most likely
offspring, and selection inside a real host-evolve run (--candidates)."""
import numpy as np
import pytest
import torch

from contract.preprocess import PreprocessSpec
from host.evolve.config import resolve
from host.evolve.data import CachedImages
from host.evolve.demo import write_demo_dataset
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from host.evolve.selection import ProxySet, fidelity, heldout_scores, logits_on, spearman, strongest_offspring
from host.evolve.surgery import cluster_strengths, inherit
from host.evolve.synthesis import keep_probabilities, solve_lambda


def images(n=40, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return CachedImages(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % classes,
                        [f"{i}.jpg" for i in range(n)], [])


def test_the_proxy_set_is_stratified_fixed_by_its_seed_and_apart_from_the_tuning_images():
    data = images(40, 4)
    a, b, c = ProxySet.draw(data, 8, 1), ProxySet.draw(data, 8, 1), ProxySet.draw(data, 8, 2)
    assert np.array_equal(a.score, b.score) and not np.array_equal(a.score, c.score)
    assert np.bincount(data.labels[a.score], minlength=4).tolist() == [2, 2, 2, 2]
    assert not set(a.score) & set(a.tune) and len(a.score) + len(a.tune) == 40


def test_fidelity_is_zero_for_the_same_function_and_grows_as_the_candidate_departs():
    torch.manual_seed(0)
    parent = SqueezeNet(Genome.squeezenet1_1(4)).eval()
    data, spec, cpu = images(), PreprocessSpec.square(32), torch.device("cpu")
    index = np.arange(16)
    reference = logits_on(parent, data, index, spec, cpu)
    assert fidelity(reference, reference) == pytest.approx(0.0, abs=1e-6)
    assert fidelity(reference + torch.randn_like(reference), reference) > 0
    loss, top1 = heldout_scores(torch.eye(4)[data.labels[:16]] * 10, data.labels[:16])
    assert top1 == 1.0 and loss < 0.01


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, abs=1e-3)  # average ranks of ties
    assert np.isnan(spearman([1, 2], [1, 2]))


def test_the_most_likely_offspring_keeps_each_layer_s_strongest_in_the_expected_number():
    torch.manual_seed(1)
    parent = SqueezeNet(Genome.squeezenet1_1(4))
    strengths = cluster_strengths(parent)
    lam = solve_lambda(strengths, 4, 0.7, image_size=32, min_filters=4, round_to=1)
    kept = strongest_offspring(strengths, lam, min_filters=4, round_to=1)
    for name, s in strengths.items():
        expected = keep_probabilities(s, lam).sum()
        assert abs(len(kept[name]) - expected) <= 0.5 + 1e-9 or len(kept[name]) == 4
        dropped = np.setdiff1d(np.arange(len(s)), kept[name])
        assert len(dropped) == 0 or s[dropped].max() <= s[kept[name]].min()
    assert inherit(parent, kept).genome.params < parent.genome.params


def test_host_evolve_with_candidates_trains_the_most_faithful_draw_and_counts_the_proxy(tmp_path):
    from host.evolve.evolution import Evolution
    data = write_demo_dataset(tmp_path / "shapes", per_class=30, size=32)
    config = resolve({}, {"data": str(data), "out": str(tmp_path / "run"), "image_size": 32, "ancestor_epochs": 1,
                          "generations": 1, "epochs": 1, "round_to": 4, "min_filters": 2, "batch_size": 16,
                          "max_drop": 1.0, "distill_weight": 0.0, "candidates": 3, "proxy_images": 16,
                          "env_factor": 0.6})
    evolution = Evolution(config)
    try:
        evolution.run()
        row = evolution.lineage.offspring(1)[0]
        # the chosen draw is the most faithful of those within the budget: redo the draws and the scoring
        from host.evolve.checkpoints import load_weights
        from host.evolve.synthesis import sample_offspring
        from host.evolve.train import derive_seed
        ancestor = load_weights(tmp_path / "run" / evolution.lineage.generation(0)["weights"], "cpu").eval()
        trained = load_weights(tmp_path / "run" / row["weights"], "cpu")
        strengths = cluster_strengths(ancestor)
        seeds = [derive_seed(0, 1, 0, 12345)] + [derive_seed(0, 1, 0, 12345, k) for k in (1, 2)]
        draws = [sample_offspring(strengths, row["lambda"], np.random.default_rng(seed), min_filters=2, round_to=4)
                 for seed in seeds] + [strongest_offspring(strengths, row["lambda"], min_filters=2, round_to=4)]
        models = [inherit(ancestor, d) for d in draws]
        within = [m for m in models if m.genome.params <= 0.6 * ancestor.genome.params] or \
            [min(models, key=lambda m: m.genome.params)]
        assert len(within) >= 2, [m.genome.params for m in models]  # a real choice among the draws that fit
        assert row["candidates"] == len(within) and row["proxy_images"] == pytest.approx((len(within) + 1) * 16 / 3)
        assert trained.genome.params <= 0.6 * ancestor.genome.params or len(within) == 1
        proxy = ProxySet.draw(evolution.data.train, 16, derive_seed(0, 777))
        cpu, spec = torch.device("cpu"), evolution.data.spec
        reference = logits_on(ancestor, evolution.data.train, proxy.score, spec, cpu)
        scores = [fidelity(logits_on(m, evolution.data.train, proxy.score, spec, cpu), reference) for m in within]
        assert within[int(np.argmin(scores))].genome == trained.genome
        assert len({m.genome.to_json() for m in models}) > 1  # the draws differ: a real choice
    finally:
        evolution.lineage.close()
        evolution.claim.release()
