"""Issue 15's robustness rows: training that cannot go silently wrong, no collapsed generation accepted,
best_generation within a tolerance. Real runs on real JPEGs where the row is about a run; the acceptance loop
with scripted offspring (their top-1 given, no training) where the row is about its rules."""
import json
import sqlite3

import pytest

from tests.host.commands import flags, host_evolve
from host.evolve.config import resolve
from host.evolve.steering import collapse_reason, milder_env_factor
from host.run.acceptance import best_generation, near_chance
from host.evolve.train import effective_batch, effective_lr

from tests.conftest import IMAGENETTE, PRETRAINED

SHAPES = (40, 32)  # the shapes dataset of this module (tests/host/conftest.py): images per class, pixels

TINY = {"image_size": 32, "ancestor_epochs": 1, "generations": 1, "epochs": 1, "round_to": 4, "min_filters": 2,
        "batch_size": 32, "max_drop": 1.0, "distill_weight": 0.0, "crop_scale": 0.7}


def test_forced_divergence_stops_with_one_line_naming_the_fix_and_the_run_is_rescued(shapes, tmp_path):
    run = tmp_path / "run"
    result = host_evolve(*flags(**dict(TINY, data=shapes, out=run, lr=500.0)))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("host-evolve: error: training diverged in generation 0") and "retries" in last
    assert f"--resume {run} --lr " in last  # names the fix, with a rate
    db = sqlite3.connect(run / "lineage.sqlite")
    assert db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0  # nothing non-finite reached the lineage
    db.close()

    rescued = host_evolve("--resume", str(run), "--lr", "0.01")
    assert rescued.returncode == 0, rescued.stderr[-2000:]
    db = sqlite3.connect(run / "lineage.sqlite")
    losses = [row[0] for row in db.execute("SELECT loss FROM epochs")]
    history = db.execute("SELECT key, old_value, new_value FROM config_history").fetchall()
    assert losses and all(loss == loss and loss < 50 for loss in losses)
    assert ("lr", "500.0", "0.01") in history  # the rescue is on record
    assert json.loads((run / "config.json").read_text())["lr"] == 0.01


def test_a_diverging_epoch_is_rolled_back_and_retried_at_half_the_rate(shapes, tmp_path):
    """A rate that diverges once but not at half of it: the run goes on and records the scale that worked."""
    from host.evolve.evolution import Evolution
    config = resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), generations=0, lr=1.0))
    evolution = Evolution(config)
    try:
        from host.evolve import train
        calls = []
        real = train.train_one_epoch

        def first_diverges(*args, **kwargs):  # the real epoch, made to diverge on its first try only
            calls.append(args[4].base_lrs[0])
            if len(calls) == 1:
                raise train.Diverged(3, float("nan"))
            return real(*args, **kwargs)

        import host.evolve.offspring as offspring_module  # where the offspring's epochs are trained
        offspring_module.train_one_epoch = first_diverges
        try:
            row = evolution.breed(0, 0, None, config.env_factor)
        finally:
            offspring_module.train_one_epoch = real
        assert calls[1] == pytest.approx(calls[0] / 2) and row["lr_scale"] == 0.5
        assert evolution.lineage.offspring(0)[0]["lr_scale"] == 0.5
    finally:
        evolution.lineage.close()
        evolution.claim.release()


class Scripted:
    """The acceptance loop of host.evolve.evolution.Evolution with offspring whose top-1 is given (no training)."""

    def __init__(self, tmp_path, shapes, script, **settings):
        from host.evolve.evolution import Evolution

        class ScriptedEvolution(Evolution):
            def breed(inner, generation, index, parent, env_factor, recovery=False):
                self.calls.append((generation, index, round(env_factor, 6)))
                return {"generation": generation, "offspring": index, "top1": script[(generation, index)],
                        "params": 1000 - index, "env_factor": env_factor}

        self.calls = []
        config = resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path / "run"), ancestor_epochs=0,
                                  **settings))
        self.evolution = ScriptedEvolution(config)

    def close(self):
        self.evolution.lineage.close()
        self.evolution.claim.release()


def test_a_collapsed_offspring_is_redrawn_at_a_milder_r_then_the_generation_is_not_accepted(shapes, tmp_path):
    scripted = Scripted(tmp_path, shapes, {(1, 0): 0.30, (1, 1): 0.31, (1, 2): 0.32}, max_drop=0.1, redraws=2)
    try:
        best, verdict = scripted.evolution.breed_generation(1, object(), 0.90, 0.8)
        assert scripted.calls == [(1, 0, 0.8), (1, 1, 0.9), (1, 2, 0.95)]  # R_k = 1 - (1 - R) / 2^k
        assert verdict is not None and "near chance" in verdict and best["offspring"] == 2
    finally:
        scripted.close()


def test_a_redraw_that_recovers_is_accepted(shapes, tmp_path):
    scripted = Scripted(tmp_path, shapes, {(1, 0): 0.70, (1, 1): 0.86}, max_drop=0.1, redraws=2)
    try:
        best, verdict = scripted.evolution.breed_generation(1, object(), 0.90, 0.8)
        assert verdict is None and best["offspring"] == 1 and best["env_factor"] == pytest.approx(0.9)
        assert len(scripted.calls) == 2  # no third draw once one is acceptable
    finally:
        scripted.close()


def test_an_ancestor_at_chance_is_not_accepted_and_not_redrawn(shapes, tmp_path):
    scripted = Scripted(tmp_path, shapes, {(0, 0): 0.25}, max_drop=0.1)
    try:
        best, verdict = scripted.evolution.breed_generation(0, None, None, 0.8)
        assert scripted.calls == [(0, 0, 0.8)] and "the ancestor" in verdict and "near chance" in verdict
    finally:
        scripted.close()


def test_a_run_whose_ancestor_did_not_learn_says_so_and_names_no_generation_best(shapes, tmp_path):
    """The mechanics go on (a one-epoch smoke run is a user's to make) but nothing is called best."""
    run = tmp_path / "run"
    result = host_evolve(*flags(**dict(TINY, data=shapes, out=run, ancestor_epochs=0, max_drop=0.1, generations=1)))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "the ancestor did not learn" in result.stderr and "no generation to deploy" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert [g["generation"] for g in summary["generations"]] == [0, 1]
    assert summary["best_generation"] is None and "near chance" in summary["best_reason"]


def test_collapse_rules():
    assert near_chance(0.333, 3) and near_chance(0.45, 3) and not near_chance(0.55, 3)
    assert near_chance(0.25, 4) and not near_chance(0.5, 4) and near_chance(0.3, 10) and not near_chance(0.4, 10)
    assert collapse_reason(3, 0.85, 0.90, 10, 0.10) is None
    assert "below its parent" in collapse_reason(3, 0.79, 0.90, 10, 0.10)
    assert "near chance" in collapse_reason(3, 0.11, 0.90, 10, 0.10)
    assert collapse_reason(3, 0.11, 0.90, 10, 1.0) is None  # max_drop 1: acceptance off
    assert collapse_reason(3, 0.10, 0.12, 10, 0.10) is None  # a parent at chance: nothing to fall from
    assert "below the ancestor" in collapse_reason(3, 0.84, 0.86, 10, 0.10, ancestor_top1=0.90, max_total_drop=0.05)
    assert collapse_reason(3, 0.86, 0.86, 10, 0.10, ancestor_top1=0.90, max_total_drop=0.05) is None
    assert [round(milder_env_factor(0.93, k), 4) for k in (0, 1, 2)] == [0.93, 0.965, 0.9825]


def test_best_generation_is_the_smallest_within_the_tolerance_of_the_ancestor():
    gens = [{"generation": 0, "top1": 0.90, "size_bytes": 5e6}, {"generation": 1, "top1": 0.89, "size_bytes": 3e6},
            {"generation": 2, "top1": 0.885, "size_bytes": 2e6}, {"generation": 3, "top1": 0.60, "size_bytes": 1e6}]
    number, why = best_generation(gens, 0.02)
    assert number == 2 and "within 2 points" in why and "88.5 %" in why
    assert best_generation(gens, 0.0)[0] == 0  # no tolerance: only as good as the ancestor
    assert best_generation(gens, 0.5)[0] == 3
    assert best_generation(gens, 0.5, floor=0.7)[0] == 2  # the floor still holds
    assert best_generation([], 0.02)[0] is None


def test_the_batch_shrinks_for_small_data_and_the_rate_scales_with_it():
    assert effective_batch(8522, 64) == 64
    assert effective_batch(90, 64) == 9  # >= 10 steps an epoch
    assert effective_batch(10, 64) == 2
    assert effective_lr(0.01, 64) == pytest.approx(0.01) and effective_lr(0.01, 16) == pytest.approx(0.0025)


def test_a_preset_is_a_set_of_values_under_the_flags(tmp_path):
    from host.evolve.cli import get_args_parser, resolve_config
    config = resolve_config(get_args_parser().parse_args(["--preset", "tiny", "--data", "x", "--epochs", "2"]))
    assert (config.preset, config.target_mb, config.budget, config.epochs, config.round_to) == ("tiny", 0.49, "macs", 2, 16)
    # tiny's measured paths went 5.1 and 7.5 points below its ancestor (docs/benchmarks.md 7, 9k): the default 5
    # would stop them; its last generation ended 4.0 below (9k), inside tiny's tolerance
    assert (config.max_total_drop, config.top1_tolerance) == (0.08, 0.05)
    compact = resolve_config(get_args_parser().parse_args(["--preset", "compact", "--data", "x"]))
    assert (compact.max_total_drop, compact.top1_tolerance, compact.target_mb) == (0.05, 0.02, 0.95)
    # both measured recipes end with 20 recovery epochs (docs/benchmarks.md 9k: +1.4 and +2.8 points over 4)
    assert (compact.final_epochs, config.final_epochs) == (20, 20)
    assert resolve_config(get_args_parser().parse_args(["--preset", "compact", "--data", "x", "--final-epochs",
                                                        "2"])).final_epochs == 2  # a flag wins over the preset
    result = host_evolve("--preset", "huge", "--data", "x")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_resume_refuses_a_preset(shapes, tmp_path):
    from host.evolve.config import save
    save(resolve({}, dict(TINY, data=str(shapes), out=str(tmp_path))), tmp_path / "config.json")
    result = host_evolve("--resume", str(tmp_path), "--preset", "compact")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a resumed run keeps its own settings" in result.stderr


def test_host_serve_names_no_best_generation_when_the_ancestor_is_at_chance(tmp_path):
    """summary.json and host-serve's /models/best/ follow one rule (host/run/report.py: best_generation)."""
    from host.run.acceptance import run_best_generation as run_best
    genome = json.dumps({"num_classes": 4, "conv1": 8, "fires": []})
    gens = [{"generation": 0, "top1": 0.25, "size_bytes": 5e6, "genome": genome},
            {"generation": 1, "top1": 0.26, "size_bytes": 3e6, "genome": genome}]
    assert run_best(gens, {"max_drop": 0.1})[0] is None
    assert run_best(gens, {"max_drop": 1.0})[0] == 1  # acceptance off: the size rule alone


class Recording:
    """host.evolve.evolution.Evolution whose offspring are scored from a script (no training) but recorded in a real lineage
    and exported for real (one real model file stands for every offspring): the loop's bookkeeping, end to end."""

    def __init__(self, tmp_path, shapes, script):
        from host.evolve.checkpoints import save_model
        from host.evolve.evolution import Evolution
        from host.evolve.genome import Genome
        from host.evolve.model import SqueezeNet

        self.tmp_path, self.shapes, self.calls = tmp_path, shapes, []
        weights = tmp_path / "w.pt"
        save_model(SqueezeNet(Genome.squeezenet1_1(4)), weights, 0.0)
        calls = self.calls

        class Scripted(Evolution):
            def breed(self, generation, index, parent, env_factor, recovery=False):
                calls.append((generation, index, recovery))
                genome = Genome.squeezenet1_1(4)
                row = {"generation": generation, "offspring": index, "parent": generation - 1 if generation else None,
                       "genome": genome.to_json(), "params": genome.params, "size_bytes": genome.size_bytes,
                       "macs": genome.macs(32), "top1": script[(generation, index)], "top5": 1.0,
                       "train_seconds": 1.0, "lambda": None if generation == 0 or recovery else 0.5,
                       "weights": str(weights), "env_factor": None if generation == 0 else env_factor}
                self.lineage.add_offspring(row)
                return row

        self.evolution_class = Scripted

    def run(self, **settings):
        run = self.tmp_path / "run"
        config = resolve({}, dict(TINY, data=str(self.shapes), out=str(run), ancestor_epochs=0, max_drop=0.1,
                                  redraws=2, final_epochs=1, target_mb=0, **settings))
        evolution = self.evolution_class(config, resume=(run / "lineage.sqlite").exists())
        try:
            return evolution.run(), evolution.lineage.generations()
        finally:
            evolution.lineage.close()
            evolution.claim.release()


def test_a_run_ended_by_acceptance_still_gets_its_recovery_fine_tune_after_the_draws(shapes, tmp_path):
    """Generation 2 not accepted (its draws, 0-2, stay in the lineage): the run ends at generation 1 and
    --final-epochs fine-tunes generation 1 as offspring 3 of generation 2, not the collapsed draw 0 judged again;
    a resume of the finished run breeds nothing more and keeps the recovery."""
    from host.evolve.evolution import is_recovery
    scripted = Recording(tmp_path, shapes, {(0, 0): 0.90, (1, 0): 0.88, (2, 0): 0.30, (2, 1): 0.31, (2, 2): 0.32,
                                            (2, 3): 0.89})
    summary, generations = scripted.run(generations=3)
    assert scripted.calls == [(0, 0, False), (1, 0, False), (2, 0, False), (2, 1, False), (2, 2, False), (2, 3, True)]
    assert [g["generation"] for g in generations] == [0, 1, 2]
    assert generations[2]["offspring"] == 3 and generations[2]["top1"] == 0.89 and is_recovery(generations[2])
    assert "not accepted" in summary["stopped"]
    scripted.calls.clear()
    summary, again = scripted.run(generations=3)
    assert scripted.calls == [] and [g["offspring"] for g in again] == [0, 0, 3] and "not accepted" in summary["stopped"]


def test_a_finished_run_resumed_with_more_generations_breeds_on_from_its_recovery(shapes, tmp_path):
    """A run that ran its course (generation 1, then its recovery as generation 2) resumed with --generations 3:
    generation 3 is bred from the recovery and recovered in turn (generation 4), nothing recorded twice."""
    scripted = Recording(tmp_path, shapes, {(0, 0): 0.90, (1, 0): 0.88, (2, 0): 0.89, (3, 0): 0.87, (4, 0): 0.88})
    scripted.run(generations=1)
    assert scripted.calls == [(0, 0, False), (1, 0, False), (2, 0, True)]
    scripted.calls.clear()
    summary, generations = scripted.run(generations=3)
    assert scripted.calls == [(3, 0, False), (4, 0, True)]
    assert [(g["generation"], g["parent"]) for g in generations] == [(0, None), (1, 0), (2, 1), (3, 2), (4, 3)]
    assert summary["stopped"] is None


@pytest.mark.skipif(not (IMAGENETTE.is_dir() and PRETRAINED.is_file()),
                    reason="../shared/datasets/imagenette and ../shared/weights (beside the project) are not here")
def test_small_data_with_default_flags_learns_and_accepts_nothing_far_below_the_ancestor(tmp_path):
    """Issue 15's small-data row on real photos, cut to 2 generations: 3 Imagenette classes x 30 train (+ 20 val)
    photos, `host-evolve --data DIR --pretrained W`, nothing else. Before issue 15 every generation scored 33.3 %
    (90 photos at batch 64: one step an epoch); docs/benchmarks.md 9a has the 15-generation runs."""
    from bench.robustness import small_tree
    data = small_tree(tmp_path / "data", seed=0)
    result = host_evolve("--data", str(data), "--pretrained", str(PRETRAINED), "--generations", "2",
                         "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    top1 = [g["top1"] for g in summary["generations"]]
    assert top1[0] >= 0.85  # the ancestor: 95.0 % in 9a
    assert all(t >= top1[0] - 0.05 for t in top1[1:])  # no accepted generation more than 5 points below
    assert summary["best_generation"] is not None
