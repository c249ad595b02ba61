"""bench/heredity_dry_run.py: the heredity rules on the pretrained strengths, no training."""
import importlib

from tests.conftest import PRETRAINED, needs


def dry_run_module():
    return importlib.import_module("bench.heredity_dry_run")  # bench/ is a namespace package beside tests/


@needs(PRETRAINED)
def test_sizes_fall_by_about_r_and_the_cost_aware_rule_cuts_compute_faster():
    module = dry_run_module()
    paper, genome = module.dry_run("macs", 0.8, 3, 0.0, 8, pretrained=str(PRETRAINED))
    aware, aware_genome = module.dry_run("macs", 0.8, 3, 0.0, 8, cost_exponent=1.0, pretrained=str(PRETRAINED))
    assert [r[0] for r in paper] == [1, 2, 3]
    assert all(a[2] > b[2] for a, b in zip(paper, paper[1:]))  # every generation smaller
    assert 0.35 < paper[-1][3] < 0.7  # MACs near 0.8^3 = 0.51 (one draw each, rounding)
    # the same compute budget (MACs within draw noise) spent on other layers: the cost-aware rule cuts the
    # filters that cost the most compute, so the same MACs cut removes far fewer parameters
    assert abs(aware[-1][3] - paper[-1][3]) < 0.15 and aware[-1][2] > 1.3 * paper[-1][2]
    assert aware_genome.layer_widths()["fire2.squeeze"] <= genome.layer_widths()["fire2.squeeze"]
    assert aware_genome.layer_widths()["fire9.expand1x1"] >= genome.layer_widths()["fire9.expand1x1"]


@needs(PRETRAINED)
def test_the_size_rule_stops_at_the_target():
    rows, genome = dry_run_module().dry_run("params", 0.8, 10, 1.5, 8, pretrained=str(PRETRAINED))
    assert genome.size_bytes <= 1.5e6 and len(rows) < 10
    assert rows[-2][2] > 1.5  # the one before was still above the target
