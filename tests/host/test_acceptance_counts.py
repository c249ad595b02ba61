"""Acceptance in validation images, with chance as the majority class's share and every top-1 with its interval
(issue 30, kinds 3 and 4): the pure rules (host/run/acceptance.py, host/evolve/steering.py), then a real run on an
unbalanced folder of real JPEGs, and host-serve's listing and page over it."""
import json

import cv2
import numpy as np
import pytest

from host.evolve.steering import collapse_reason
from host.run.acceptance import (best_generation, chance_share, images_of, interval, near_chance, never_predicted,
                                 run_best_generation, small_split_warning, top1_text)
from tests.host.commands import flags, host_evolve


def row(generation, correct, support, predicted, size):
    counts = {"support": support, "correct": correct, "predicted": predicted}
    return {"generation": generation, "top1": sum(correct) / sum(support), "size_bytes": size, "val_counts": counts,
            "genome": {"num_classes": len(support)}}


def test_chance_is_the_majority_share_when_that_is_larger():
    assert chance_share(2, {"support": [45, 3]}) == pytest.approx(45 / 48)
    assert chance_share(10, {"support": [10] * 10}) == pytest.approx(0.1)
    assert near_chance(0.80, 2, chance_share(2, {"support": [4, 1]}))  # answering "ok" to all: 80 %, learned nothing
    assert not near_chance(0.80, 2)  # against 1/N alone it looked learned: the fault of issue 30


def test_tolerances_are_counted_in_whole_images():
    assert images_of(0.02, 200) == 4 and images_of(0.02, 16) == 0 and images_of(0.10, 16) == 1
    # exactly 2.0 points below on 200 images (4 images): within a 2-point tolerance, whatever the floats say
    ancestor = row(0, [90, 90], [100, 100], [100, 100], 5e6)
    exactly = row(1, [88, 88], [100, 100], [100, 100], 3e6)
    assert 0.90 - exactly["top1"] > 0.02  # the float comparison that refused it
    number, why = best_generation([ancestor, exactly], 0.02)
    assert number == 1 and "176 of 200 validation images" in why and "less 4 (2 points" in why
    assert collapse_reason(1, exactly["top1"], ancestor["top1"], 2, max_drop=0.02, images=200) is None
    assert collapse_reason(1, 0.875, 0.90, 2, max_drop=0.02, images=200) is not None  # 5 images: refused


def test_a_generation_that_never_answers_a_class_is_never_named_best_and_the_reason_says_so():
    ancestor = row(0, [40, 2], [44, 4], [42, 6], 5e6)
    blind = row(1, [44, 0], [44, 4], [48, 0], 3e6)  # answers "ok" to everything: 91.7 %
    assert never_predicted(blind) == [1]
    number, why = best_generation([ancestor, blind], 0.05, labels=["ok", "defect"])
    assert number == 0
    assert "generation 1 passed over: it never answers 'defect'" in why
    number, why = run_best_generation([blind], {"max_drop": 0.1}, labels=["ok", "defect"])
    assert number is None and "near chance (the majority class's share 91.7 %)" in why


def test_the_bar_is_said_to_be_anchored_to_the_ancestor():
    ancestor = row(0, [8, 7], [8, 8], [8, 8], 5e6)        # 93.8 %
    accurate = row(1, [8, 7], [8, 8], [8, 8], 2.04e6)    # 93.8 %, a little larger
    small = row(2, [7, 7], [8, 8], [7, 9], 2.0e6)         # 87.5 %: within 10 points of the ancestor
    number, why = best_generation([ancestor, accurate, small], 0.10)
    assert number == 2 and "anchored to the ancestor" in why and "generation 0 (93.8 %" in why


def test_every_top1_carries_its_interval_and_a_small_split_is_warned_about():
    low, high = interval(14, 16)
    assert 0.63 < low < 0.65 and 0.96 < high < 0.97  # Wilson's interval for 14 of 16
    assert top1_text(row(3, [7, 7], [8, 8], [8, 8], 1e6)) == "87.5 % (14/16, 95 % CI 64-97)"
    warning = small_split_warning(16, 0.02, 0.10)
    assert "16 images: one image is 6.25 points" in warning and "--top1-tolerance 2 points = 0.3 image(s)" in warning
    assert small_split_warning(2000, 0.02, 0.10) is None


def photos(root, counts):
    for k, (name, number) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(number):
            rng = np.random.default_rng(100 * k + i)
            picture = np.full((32, 32, 3), int(rng.integers(0, 80)), np.uint8)
            colour = tuple(int(x) for x in rng.integers(120, 255, 3))
            if k == 0:
                cv2.circle(picture, (16, 16), 8, colour, -1)
            else:
                cv2.rectangle(picture, (8, 8), (24, 24), colour, -1)
            cv2.imwrite(str(root / name / f"{i:03d}.jpg"), picture)
    return root


def test_an_unbalanced_run_that_learned_only_the_majority_names_no_best_and_says_why(tmp_path):
    pytest.importorskip("torch")
    data = photos(tmp_path / "data", {"ok": 45, "defect": 3})
    run = tmp_path / "run"
    done = host_evolve(*flags(data=data, out=run, image_size=32, generations=1, epochs=1, ancestor_epochs=1,
                              batch_size=8))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    ancestor = summary["generations"][0]
    assert ancestor["val_images"] == 5 and len(ancestor["top1_interval"]) == 2
    assert set(ancestor["recall"]) == {"ok", "defect"} and summary["validation"]["warning"]
    console = done.stdout + done.stderr
    assert "recall per class, ancestor (generation 0): defect" in console
    if summary["best_generation"] is not None:  # it learned the minority class after all: then it answers it
        best = next(g for g in summary["generations"] if g["generation"] == summary["best_generation"])
        assert best["never_predicts"] == [] and best["top1"] > summary["chance"]
    else:
        assert "near chance" in summary["best_reason"] or "never answers" in summary["best_reason"]
        assert "no generation to deploy" in console

    # host-serve lists each top-1 with what it rests on, and its page shows the interval
    from tests.tiny_run import serving
    import httpx
    with serving(run, "acceptance-token-0123456789abcdef") as server:
        listed = httpx.get(server.url + "/generations").json()
        page = httpx.get(server.url + "/").text
    assert listed[0]["val_images"] == 5 and listed[0]["top1_interval"] == pytest.approx(ancestor["top1_interval"])
    assert "95 % CI" in page and "5 images" in page
