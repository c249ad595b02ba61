"""The heredity model: probabilities, the solved lambda, seeded sampling, floors and rounding."""
import numpy as np
import pytest

from host.errors import HostError
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet
from host.evolve.surgery import cluster_strengths
from host.evolve.synthesis import (expected_width, final_count, keep_probabilities, kept_count_pmf, sample_offspring,
                            solve_lambda)


@pytest.fixture(scope="module")
def strengths():
    import torch
    torch.manual_seed(0)
    return cluster_strengths(SqueezeNet(Genome.squeezenet1_1(10)))


def widths(kept):
    return Genome.from_layer_widths(10, {name: len(idx) for name, idx in kept.items()})


def test_probabilities_grow_with_strength_and_the_strongest_gets_min_1_lambda():
    s = np.array([0.1, 0.5, 1.0, 2.0, 4.0])
    for lam in (0.3, 0.9, 1.5):
        p = keep_probabilities(s, lam)
        assert np.all(np.diff(p) >= 0) and np.all(np.diff(p[p < 1]) > 0)
        assert p[-1] == pytest.approx(min(1.0, lam))
        assert np.all((0 <= p) & (p <= 1))


def test_kept_count_pmf_is_the_poisson_binomial():
    p = np.array([0.2, 0.5, 1.0, 0.9])
    pmf = kept_count_pmf(p)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf @ np.arange(len(pmf)) == pytest.approx(p.sum())
    rng = np.random.default_rng(1)
    draws = (rng.random((200_000, 4)) < p).sum(1)
    assert np.bincount(draws, minlength=5) / len(draws) == pytest.approx(pmf, abs=0.005)


@pytest.mark.parametrize("round_to,min_filters", [(1, 1), (8, 4)])
def test_mean_offspring_params_is_r_times_the_parents(strengths, round_to, min_filters):
    parent = Genome.squeezenet1_1(10).params
    for r in (0.93, 0.7):
        lam = solve_lambda(strengths, 10, r, round_to=round_to, min_filters=min_filters)
        rng = np.random.default_rng(0)
        params = [widths(sample_offspring(strengths, lam, rng, round_to=round_to, min_filters=min_filters)).params
                  for _ in range(300)]
        # stated tolerance: the mean of 300 offspring is within 1 % of R x parent
        assert np.mean(params) / parent == pytest.approx(r, rel=0.01)


def test_macs_budget_targets_compute(strengths):
    parent = Genome.squeezenet1_1(10).macs(112)
    lam = solve_lambda(strengths, 10, 0.8, kind="macs", image_size=112)
    rng = np.random.default_rng(0)
    macs = [widths(sample_offspring(strengths, lam, rng)).macs(112) for _ in range(200)]
    assert np.mean(macs) / parent == pytest.approx(0.8, rel=0.01)


def test_same_seed_same_offspring_other_seed_other_offspring(strengths):
    lam = solve_lambda(strengths, 10, 0.9)
    a = sample_offspring(strengths, lam, np.random.default_rng(42))
    b = sample_offspring(strengths, lam, np.random.default_rng(42))
    c = sample_offspring(strengths, lam, np.random.default_rng(43))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_floor_and_rounding_top_up_with_the_strongest():
    strengths = {"conv1": np.arange(1.0, 33.0)}  # filter i has strength i + 1
    kept = sample_offspring(strengths, 0.0, np.random.default_rng(0), min_filters=5, round_to=8)["conv1"]
    assert list(kept) == list(range(24, 32))  # nothing survives by chance; 5 -> rounded to 8, the 8 strongest
    assert final_count(3, 16, 4, 8) == 8 and final_count(9, 12, 4, 8) == 12 and final_count(9, 64, 1, 1) == 9


def test_expected_width_accounts_for_floor_and_rounding():
    p = np.full(20, 0.3)
    rng = np.random.default_rng(0)
    sampled = [final_count(int((rng.random(20) < p).sum()), 20, 4, 8) for _ in range(100_000)]
    assert expected_width(p, 4, 8) == pytest.approx(np.mean(sampled), rel=0.01)


def test_r_outside_zero_one_is_refused(strengths):
    with pytest.raises(HostError, match="must be in \\(0, 1\\]"):
        solve_lambda(strengths, 10, 1.2)


def test_cost_aware_heredity_off_is_the_papers_model(strengths):
    from host.evolve.synthesis import layer_scales
    scales = layer_scales(strengths, 10, 112, 0.0)
    assert set(scales.values()) == {1.0}
    lam = solve_lambda(strengths, 10, 0.8, kind="macs", image_size=112)
    assert solve_lambda(strengths, 10, 0.8, kind="macs", image_size=112, scales=scales) == lam
    a = sample_offspring(strengths, lam, np.random.default_rng(3), scales=scales)
    b = sample_offspring(strengths, lam, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_marginal_cost_is_what_one_filter_less_saves():
    from host.evolve.synthesis import marginal_costs
    genome = Genome.squeezenet1_1(10)
    widths_now = {k: float(v) for k, v in genome.layer_widths().items()}
    costs = marginal_costs(10, widths_now, 112, "macs")
    for name in ("conv1", "fire9.expand3x3"):
        fewer = Genome.from_layer_widths(10, dict(genome.layer_widths(), **{name: genome.layer_widths()[name] - 1}))
        assert costs[name] == pytest.approx(genome.macs(112) - fewer.macs(112))
    assert costs["conv1"] > 3 * costs["fire9.expand3x3"]  # 55 x 55 pixels against 6 x 6 (at 112 px)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_cost_aware_heredity_keeps_the_budget_and_cuts_costly_layers_harder(strengths, alpha):
    """Step 5: the mean offspring still costs R x the parent (the expectation holds with lambda_l), and the
    layer whose filters cost the most MACs (conv1) keeps a smaller share than under the paper's model,
    the cheapest (a late expand) a larger one; so compute falls faster than under one lambda."""
    from host.evolve.synthesis import layer_scales, marginal_costs
    genome = Genome.squeezenet1_1(10)
    scales = layer_scales(strengths, 10, 112, alpha)
    costs = marginal_costs(10, {k: float(v) for k, v in genome.layer_widths().items()}, 112, "macs")
    costly, cheap = max(costs, key=costs.get), min(costs, key=costs.get)
    assert scales[costly] < 1 < scales[cheap]
    shares = {}
    for label, layer_scale in (("paper", None), ("aware", scales)):
        lam = solve_lambda(strengths, 10, 0.7, kind="macs", image_size=112, scales=layer_scale)
        rng = np.random.default_rng(0)
        kids = [sample_offspring(strengths, lam, rng, scales=layer_scale) for _ in range(300)]
        macs = [widths(k).macs(112) for k in kids]
        assert np.mean(macs) / genome.macs(112) == pytest.approx(0.7, rel=0.01)
        shares[label] = {name: np.mean([len(k[name]) for k in kids]) / len(strengths[name]) for name in (costly, cheap)}
    assert shares["aware"][costly] < shares["paper"][costly] and shares["aware"][cheap] > shares["paper"][cheap]


def test_compute_aware_heredity_under_a_size_budget_keeps_the_size_and_cuts_more_compute(strengths):
    """Step 5 with --budget params: the mean offspring's size is still R x the parent's, its MACs lower."""
    from host.evolve.synthesis import layer_scales
    genome = Genome.squeezenet1_1(10)
    results = {}
    for alpha in (0.0, 1.0):
        scales = layer_scales(strengths, 10, 112, alpha)
        lam = solve_lambda(strengths, 10, 0.7, kind="params", image_size=112, scales=scales)
        rng = np.random.default_rng(0)
        kids = [widths(sample_offspring(strengths, lam, rng, scales=scales)) for _ in range(300)]
        assert np.mean([k.params for k in kids]) / genome.params == pytest.approx(0.7, rel=0.01)
        results[alpha] = np.mean([k.macs(112) for k in kids]) / genome.macs(112)
    assert results[1.0] < results[0.0] - 0.05
