"""bench/peers.py's three ways to a smaller net, on an untrained SqueezeNet v1.1 (10 classes, 32 px): each
gives a host SqueezeNet within the parameter budget, near it (not needlessly small), whose fire concat is
consistent (it runs), and that exports through host/evolve/export.py and runs in ONNX Runtime like torch."""
import importlib
import json

import numpy as np
import pytest
import torch

from contract.preprocess import PreprocessSpec
from host.evolve.export import export_generation
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet


def peers():
    return importlib.import_module("bench.peers")  # bench/ is a namespace package beside tests/


def ancestor():
    torch.manual_seed(0)
    return SqueezeNet(Genome.squeezenet1_1(10)).eval()


def check(model, target, tmp_path):
    assert isinstance(model, SqueezeNet)
    assert model.genome.params <= target
    assert model.genome.params >= 0.8 * target  # spends the budget
    images = torch.randn(2, 3, 32, 32)
    assert model.eval()(images).shape == (2, 10)
    card = export_generation(model, tmp_path, spec=PreprocessSpec.square(32), labels=[str(i) for i in range(10)],
                             generation=0, parity_images=images.numpy())  # raises if ORT and torch disagree
    assert card["params"] == model.genome.params and (tmp_path / "model.onnx").is_file()


class TinyData:
    """What selection scores candidates on: a training split of random 32 px images (10 classes)."""
    def __init__(self):
        from host.evolve.data import CachedImages
        rng = np.random.default_rng(0)
        self.spec = PreprocessSpec.square(32)
        self.train = CachedImages(rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8), np.arange(60) % 10,
                                  [f"{i}.jpg" for i in range(60)], [])


@pytest.mark.parametrize("method", ["uniform", "evolution", "selection"])
def test_uniform_evolution_and_selection_meet_the_budget_and_export(method, tmp_path):
    module = peers()
    parent = ancestor()
    target = int(0.95e6 / 4)
    model, proxy_images = module.shrink(method, parent, target, 32, seed=0, data=TinyData())
    check(model, target, tmp_path)
    assert (proxy_images > 0) == (method == "selection")  # only selection spends forward passes choosing


def test_selection_picks_the_most_faithful_of_its_candidates():
    """Among the candidates that fit, the one chosen has the smallest KL(parent || candidate) on the proxy."""
    module = peers()
    from host.evolve.selection import ProxySet, fidelity, logits_on
    parent, data = ancestor(), TinyData()
    target = int(0.6 * parent.genome.params)
    chosen, _ = module.selection_shrink(parent, target, 3, 32, data, candidates=4)
    proxy = ProxySet.draw(data.train, module.PROXY_IMAGES, __import__("host.evolve.train", fromlist=["x"]).derive_seed(3, 777))
    cpu = torch.device("cpu")
    reference = logits_on(parent, data.train, proxy.score, data.spec, cpu)
    mine = fidelity(logits_on(chosen, data.train, proxy.score, data.spec, cpu), reference)
    other = fidelity(logits_on(module.evolution_shrink(parent, target, 3, 32), data.train, proxy.score, data.spec, cpu),
                     reference)
    assert mine <= other + 1e-9


def test_torch_pruning_meets_the_budget_and_export(tmp_path):
    pytest.importorskip("torch_pruning", reason="torch-pruning is a bench extra: pip install 'squishednets[bench]'")
    module = peers()
    target = int(0.95e6 / 4)
    pruned, _ = module.shrink("torch-pruning", ancestor(), target, 32, seed=0)
    check(pruned, target, tmp_path)
    # L1: in every layer that was cut, the kept filters are the strongest of the parent's (same ratio everywhere)
    widths = pruned.genome.layer_widths()
    assert widths["conv1"] < 64 and widths["fire9.expand3x3"] < 256


def test_uniform_keeps_the_strongest_filters_in_every_layer():
    module = peers()
    parent = ancestor()
    kept = module.uniform_kept(parent, 0.5)
    from host.evolve.surgery import cluster_strengths
    for name, strengths in cluster_strengths(parent).items():
        weakest_kept = strengths[kept[name]].min()
        dropped = np.setdiff1d(np.arange(len(strengths)), kept[name])
        assert len(dropped) == 0 or strengths[dropped].max() <= weakest_kept
        assert len(kept[name]) % 8 == 0 or len(kept[name]) == len(strengths)


def test_step_targets_are_geometric_and_end_on_the_target():
    targets = peers().step_targets(800, 100, 3)
    assert targets == [400, 200, 100]


def test_torch_pruning_runs_as_users_run_it_so_a_mild_cut_keeps_most_of_every_squeeze():
    """Torch-Pruning's round_to floors the kept count: with round_to=8 a 13 % cut leaves a 16-wide squeeze 8
    wide (half its input path gone). The peer runs it with its default (no round_to): the same mild cut keeps
    at least 12 of 16, and the net still meets the budget."""
    pytest.importorskip("torch_pruning", reason="torch-pruning is a bench extra: pip install 'squishednets[bench]'")
    module = peers()
    parent = ancestor()
    target = int(0.87 * parent.genome.params)
    widths = module.shrink("torch-pruning", parent, target, 32, seed=0)[0].genome.layer_widths()
    assert 12 <= widths["fire2.squeeze"] < 16, widths
    floored = module.torch_pruning_shrink(parent, target, 32, round_to=8).genome.layer_widths()
    assert floored["fire2.squeeze"] == 8, floored


def test_steps_per_size_are_one_count_or_one_per_size():
    module = peers()
    assert [module.steps_for({"steps": (3, 2)}, i) for i in (0, 1)] == [3, 2]
    assert [module.steps_for({"steps": 2}, i) for i in (0, 1)] == [2, 2]


class Bar:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_a_given_ancestor_is_used_as_it_is_and_scored_on_the_benchs_split(tmp_path):
    """--ancestor: every method starts from the user's trained model file, not one trained here; a file for
    other classes is refused by name."""
    from host.evolve.checkpoints import save_model
    from host.errors import HostError
    module = peers()
    data = TinyData()
    data.val = data.train
    data.labels = [str(i) for i in range(10)]
    given = ancestor()
    save_model(given, tmp_path / "offspring-0.pt", 0.5)
    bar = Bar()
    model, score, seconds = module.ancestor_model(data, module.SCALES["smoke"], "", tmp_path / "bench", 0, bar,
                                                  str(tmp_path / "offspring-0.pt"))
    assert model.genome == given.genome
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), given.state_dict().values()))
    assert score == pytest.approx(module.top1(given, data)) and np.isnan(seconds)
    assert bar.n == module.SCALES["smoke"]["ancestor_epochs"] and not (tmp_path / "bench" / "ancestor.pt").exists()
    other = SqueezeNet(Genome.squeezenet1_1(3))
    save_model(other, tmp_path / "three.pt", 0.5)
    with pytest.raises(HostError, match="classifies 3 classes"):
        module.ancestor_model(data, module.SCALES["smoke"], "", tmp_path / "bench", 0, Bar(), str(tmp_path / "three.pt"))


def test_score_steps_scores_the_step_files_there_and_trains_nothing(tmp_path, capsys):
    """--score-steps: one line and one steps.json row per step file present, in order; nothing trained."""
    from host.evolve.checkpoints import save_model
    module = peers()
    data = TinyData()
    data.val = data.train
    model = ancestor()
    for name in ("evolution-0.95-step0", "evolution-0.95-step1", "evolution-0.95-step1-redraw1", "evolution-0.49-recovery"):
        save_model(model, tmp_path / f"{name}.pt", 0.5)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert module.score_steps(["evolution", "uniform"], module.SCALES["smoke"], tmp_path, data) == 0
    rows = json.loads((tmp_path / "steps.json").read_text())
    assert [(r["target_mb"], r["step"]) for r in rows] == [(0.95, "step0"), (0.95, "step1"), (0.95, "step1-redraw1"),
                                                           (0.49, "recovery")]
    assert rows[0]["top1"] == pytest.approx(module.top1(model, data))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["steps.json"])
    assert capsys.readouterr().out.count("evolution <= ") == 4


@pytest.mark.parametrize("share", [0.7, 0.5, 0.35, 0.2])
def test_uniform_lands_near_every_target_not_a_whole_round_to_below(share):
    """Uniform keeps the same share of every layer; rounded to 8 a 16-wide squeeze jumps 16 -> 8, so a share can
    fall far below the step's size (0.49 MB: 142k -> 80k for a 122k target). It spends at least
    UNIFORM_SLACK of every target, as Torch-Pruning does."""
    module = peers()
    parent = ancestor()
    target = int(share * parent.genome.params)
    model = module.uniform_shrink(parent, target)
    assert module.UNIFORM_SLACK * target <= model.genome.params <= target


def test_a_collapsed_step_is_redrawn_at_a_milder_r_and_its_epochs_are_counted(tmp_path):
    """host-evolve's acceptance in the bench, for every method alike: a step far below its parent is drawn
    again at a milder R (a larger net) up to --redraws times, each redraw's epochs in the budget; the most
    accurate attempt goes on and the row names the collapse. Here the ancestor is said to score 90 % and
    every net trained on random labels scores near chance, so the first step collapses; the next does not
    (a parent at chance has nothing to fall from: host/steering.collapse_reason)."""
    module = peers()
    data = TinyData()
    data.val = data.train
    scale = dict(module.SCALES["smoke"])
    rows = module.run_method("uniform", ancestor(), data, scale, tmp_path, 0, Bar(), "ancestor",
                             ancestor_top1=0.9, max_drop=0.1, redraws=2)
    names = sorted(p.name for p in tmp_path.glob("uniform-0.95-step0*.pt"))
    assert names == ["uniform-0.95-step0-redraw1.pt", "uniform-0.95-step0-redraw2.pt", "uniform-0.95-step0.pt"]
    assert not list(tmp_path.glob("uniform-0.95-step1-redraw*.pt"))
    aims = [torch.load(tmp_path / n, weights_only=False)["aim_params"] for n in
            ("uniform-0.95-step0.pt", "uniform-0.95-step0-redraw1.pt", "uniform-0.95-step0-redraw2.pt")]
    assert aims[0] < aims[1] < aims[2] < ancestor().genome.params  # milder each time
    plain = sum(module.steps_for(scale, i) for i in range(2)) * scale["epochs_per_step"]
    assert rows[0]["epochs"] == module.steps_for(scale, 0) * scale["epochs_per_step"] + 2 * scale["epochs_per_step"]
    assert rows[1]["epochs"] == plain + 2 * scale["epochs_per_step"]
    assert rows[0]["budget_images"] == rows[0]["epochs"] * len(data.train)
    assert rows[0]["redrawn"] == ["0.95 step 1 x2"] and rows[0]["collapsed"] == ["0.95 step 1"]
    # resumed: nothing trained again, the same rows; a step file from before acceptance (no top-1 in it) is
    # scored and kept with its score
    old, _ = module.load_model(tmp_path / "uniform-0.95-step1.pt")
    module.save_model(old, tmp_path / "uniform-0.95-step1.pt", {"proxy_images": 0.0})
    again = module.run_method("uniform", ancestor(), data, scale, tmp_path, 0, Bar(), "ancestor",
                              ancestor_top1=0.9, max_drop=0.1, redraws=2)
    assert [(r["epochs"], r["params"], r["top1"]) for r in again] == [(r["epochs"], r["params"], r["top1"]) for r in rows]
    assert torch.load(tmp_path / "uniform-0.95-step1.pt", weights_only=False)["top1"] == pytest.approx(rows[0]["top1"])
    # the same folder with another teacher: refused, nothing of the first run trained over
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")}
    with pytest.raises(SystemExit, match="trained with {'teacher': 'ancestor'}.*give this run its own --out"):
        module.run_method("uniform", ancestor(), data, scale, tmp_path, 0, Bar(), "parent",
                          ancestor_top1=0.9, max_drop=0.1, redraws=2)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")} == before
    # ... and with another recovery length (--recovery-epochs): refused the same way
    with pytest.raises(SystemExit, match="trained with {'recovery_epochs': 0}.*give this run its own --out"):
        module.run_method("uniform", ancestor(), data, dict(scale, recovery_epochs=2), tmp_path, 0, Bar(), "ancestor",
                          ancestor_top1=0.9, max_drop=0.1, redraws=2)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")} == before
    # --max-drop 1: no acceptance (the runs before it)
    off = module.run_method("uniform", ancestor(), data, scale, tmp_path / "off", 0, Bar(), "ancestor",
                            ancestor_top1=0.9, max_drop=1.0, redraws=2)
    assert not list((tmp_path / "off").glob("*redraw*")) and off[1]["epochs"] == plain


def _peers_json(path, strength, methods, ancestor_file="anc.pt", top1=0.9):
    row = {"target_mb": 0.95, "top1": 0.88, "params": 230000, "size_mb": 0.92, "macs_m": 40.0, "epochs": 44,
           "budget_images": 44 * 8500, "proxy_images": 0.0, "redrawn": ["0.95 step 3 x1"], "collapsed": []}
    result = {"command": f"python bench/peers.py --strength {strength}", "ancestor_file": ancestor_file,
              "teacher": "ancestor", "scale": {"image_size": 112, "strength": strength},
              "ancestor": {"method": "ancestor", "target_mb": None, "top1": top1, "params": 727626, "size_mb": 2.91,
                           "macs_m": 64.0, "epochs": 0},
              "rows": [dict(row, method=m, top1=row["top1"] - 0.01 * i) for i, m in enumerate(methods)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


def test_merge_puts_runs_of_one_ancestor_side_by_side_labelled_by_strength(tmp_path, capsys):
    """--merge: the peers.json of runs with different --strength in one table and plot, each row labelled with
    the strength it ranked by (Torch-Pruning keeps its own); runs from another ancestor are refused by name."""
    module = peers()
    a = _peers_json(tmp_path / "a" / "peers.json", "filter", ["torch-pruning", "uniform", "evolution"])
    b = _peers_json(tmp_path / "b" / "peers.json", "consumer", ["evolution"])
    assert module.main(["--merge", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "peers-merged.md").read_text()
    labels = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert labels == ["ancestor", "torch-pruning", "uniform (filter)", "evolution (filter)", "evolution (consumer)"]
    assert "0.95 step 3 x1" in table and (tmp_path / "out" / "peers-merged.png").stat().st_size > 10_000
    again = _peers_json(tmp_path / "d" / "peers.json", "consumer", ["torch-pruning"])
    assert module.main(["--merge", str(a), str(again), "--out", str(tmp_path / "out3")]) == 0
    labels = [line.split("|")[1].strip() for line in (tmp_path / "out3" / "peers-merged.md").read_text().splitlines()[2:]]
    assert labels[1] == "torch-pruning [run 1]" and labels[-1] == "torch-pruning [run 2]"
    longer = _peers_json(tmp_path / "e" / "peers.json", "consumer", ["uniform"])
    result = json.loads(longer.read_text())
    result["scale"]["epochs_per_step"] = 1
    longer.write_text(json.dumps(result))
    assert module.main(["--merge", str(a), str(longer), "--out", str(tmp_path / "out4")]) == 2
    assert "epochs_per_step" in capsys.readouterr().err
    other = _peers_json(tmp_path / "c" / "peers.json", "consumer", ["uniform"], ancestor_file="other.pt")
    assert module.main(["--merge", str(a), str(other), "--out", str(tmp_path / "out2")]) == 2
    assert "other.pt" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_a_rerun_with_acceptance_retrains_what_was_trained_from_a_step_it_redraws(tmp_path):
    """Step files record what they were trained from: a folder run without acceptance, then rerun with it,
    redraws the collapsed step and trains its successors again from the chosen attempt (not the stale files)."""
    module = peers()
    data = TinyData()
    data.val = data.train
    scale = dict(module.SCALES["smoke"])
    module.run_method("uniform", ancestor(), data, scale, tmp_path, 0, Bar(), "ancestor", ancestor_top1=0.9,
                      max_drop=1.0)
    assert torch.load(tmp_path / "uniform-0.95-step1.pt", weights_only=False)["parent"] == "uniform-0.95-step0.pt"
    first, state = module.load_model(tmp_path / "uniform-0.95-step0.pt")
    module.save_model(first, tmp_path / "uniform-0.95-step0.pt", {**{k: state[k] for k in ("proxy_images", "parent", "aim_params") if k in state}, "top1": -1.0})  # the worst attempt, surely
    module.run_method("uniform", ancestor(), data, scale, tmp_path, 0, Bar(), "ancestor", ancestor_top1=0.9,
                      max_drop=0.1, redraws=1)
    assert torch.load(tmp_path / "uniform-0.95-step1.pt", weights_only=False)["parent"] == "uniform-0.95-step0-redraw1.pt"
    assert torch.load(tmp_path / "uniform-0.49-step0.pt", weights_only=False)["parent"] == "uniform-0.95-step1.pt"


def test_a_collapsed_last_step_is_drawn_again_at_its_size_not_a_milder_one(tmp_path):
    """On a size's last step a milder R would miss the size: the redraw keeps the size, with new seeds."""
    module = peers()
    data = TinyData()
    data.val = data.train
    scale = dict(module.SCALES["smoke"], steps=(1, 1))
    rows = module.run_method("evolution", ancestor(), data, scale, tmp_path, 0, Bar(), "ancestor", ancestor_top1=0.9,
                             max_drop=0.1, redraws=1)
    aims = [torch.load(tmp_path / n, weights_only=False)["aim_params"]
            for n in ("evolution-0.95-step0.pt", "evolution-0.95-step0-redraw1.pt")]
    assert aims[0] == aims[1] == int(0.95e6 / 4) and rows[0]["params"] <= aims[0]
    assert module.main(["--redraws", "-1", "--scale", "smoke"]) == 2
    assert module.main(["--recovery-epochs", "-1", "--scale", "smoke", "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()


def test_merge_can_measure_every_run_again_side_by_side_in_one_process(tmp_path, capsys):
    """--merge --speed-rounds: the ONNX of every row (RUN/<method>-<MB>/model.onnx) timed in one process, each
    alternately with the ancestor; a run without its ONNX is refused, naming the file and the fix."""
    module = peers()
    spec = PreprocessSpec.square(32)
    images = torch.randn(2, 3, 32, 32).numpy()
    parent = ancestor()
    small = module.uniform_shrink(parent, int(0.3 * parent.genome.params)).eval()
    a = _peers_json(tmp_path / "a" / "peers.json", "filter", ["uniform"])
    b = _peers_json(tmp_path / "b" / "peers.json", "consumer", ["evolution"])
    for folder, model in ((tmp_path / "a" / "ancestor", parent), (tmp_path / "a" / "uniform-0.95", small)):
        export_generation(model, folder, spec=spec, labels=[str(i) for i in range(10)], generation=0, parity_images=images)
    assert module.merge([a, b], tmp_path / "out", speed_rounds=1, seconds=0.2) == 2
    assert "evolution-0.95/model.onnx" in capsys.readouterr().err
    export_generation(small, tmp_path / "b" / "evolution-0.95", spec=spec, labels=[str(i) for i in range(10)],
                      generation=0, parity_images=images)
    assert module.merge([a, b], tmp_path / "out", speed_rounds=1, seconds=0.2) == 0
    merged = json.loads((tmp_path / "out" / "peers-merged.json").read_text())
    assert merged["speed_rounds"] == 1 and all(r["b1_vs_ancestor"] > 0 and r["b8_ips"] > 0 for r in merged["rows"])
    assert 0.2 < merged["ancestor"]["b1_vs_ancestor"] < 5  # the ancestor against itself


def test_the_gentle_scales_distil_from_the_ancestor_unless_told_and_each_run_names_its_file():
    module = peers()
    assert [module.default_teacher(module.SCALES[s]) for s in ("gentle", "gentle-64", "gentle-112")] == ["ancestor"] * 3
    assert [module.default_teacher(module.SCALES[s]) for s in ("small", "full", "smoke")] == ["parent"] * 3
    assert module.run_file_name(["evolution", "uniform"], "consumer") == "peers-evolution+uniform-consumer.json"
