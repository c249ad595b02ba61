"""report.png's speed panel and the deploy answer follow what devices measured, honestly (issue 30, kind 5): the
axis from zero, each device and kind named, unstable figures drawn apart and said; host-serve redraws summary.json
and report.png when a device's figure arrives; the fastest generation within the bar per device. Real run folder,
real host-serve on loopback."""
import json
import time

import pytest

from host.run.acceptance import fastest_within_bar
from host.run.report import plot_report, speed_series

httpx = pytest.importorskip("httpx")


def gen(number, top1, fps, stable=True, device="tx1"):
    figure = {"device_id": device, "measurement": "benchmark-b1", "fps": fps, "stable": stable, "received_at": 1.0}
    return {"generation": number, "top1": top1, "size_bytes": 5e6 - number * 1e6, "size_mb": 5 - number,
            "macs": 1e8, "local_fps": 700.0 + number, "device_figures": [figure], "params": 1}


def test_unstable_device_figures_are_drawn_apart_and_named_and_the_axis_starts_at_zero(tmp_path):
    gens = [gen(0, 0.9, 730.0), gen(1, 0.89, 960.0, stable=False), gen(2, 0.88, 780.0)]
    series = {name: (points, hollow) for name, _, points, hollow in speed_series(gens)}
    assert series["tx1: benchmark, batch 1"] == ([(0, 730.0), (2, 780.0)], False)
    assert series["tx1: benchmark, batch 1 (UNSTABLE: runs disagreed)"] == ([(1, 960.0)], True)
    assert "local fps (ONNX Runtime, batch 1, this machine)" in series
    from host.run.layout import RunLayout
    summary = {"generations": gens, "pareto": [0, 1, 2], "best_generation": None, "top1_tolerance": 0.02,
               "num_classes": 3, "target_fps": None}
    drawn = plot_report(RunLayout(tmp_path), summary)
    assert "images/s (from 0)" in drawn and (tmp_path / "report.png").stat().st_size > 10000


def test_the_fastest_generation_within_the_bar_is_named_per_device():
    gens = [gen(0, 0.90, 700.0), gen(1, 0.89, 900.0), gen(2, 0.80, 1500.0), gen(3, 0.895, 990.0, stable=False)]
    assert fastest_within_bar(gens, 0.02) == {"tx1": {"generation": 1, "fps": 900.0}}  # 2: below, 3: unstable
    assert fastest_within_bar([dict(g, device_figures=[]) for g in gens], 0.02) is None


def test_host_serve_redraws_the_summary_when_a_device_figure_arrives(tmp_path):
    from host.run.layout import RunLayout
    from host.run.lineage import Lineage
    from host.run.report import refresh
    from tests.host.test_serve import TOKEN, report
    from tests.tiny_run import LABELS, served_tiny_run
    run = tmp_path / "run"
    with served_tiny_run(run, TOKEN) as (server, _, card):
        lineage = Lineage(run / "lineage.sqlite")
        try:
            refresh(RunLayout(run), lineage, {"size": 32}, LABELS)  # what host-evolve left: no device figure yet
        finally:
            lineage.close()
        assert json.loads((run / "summary.json").read_text())["generations"][0]["device_figures"] == []
        body = report(card, 1, kind="benchmark", device_id="nano-1", fps=321.0)
        body["stats"].update(batch=1, stable=True)
        assert httpx.post(server.url + "/reports", json=body,
                          headers={"Authorization": "Bearer " + TOKEN}).status_code == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            figures = json.loads((run / "summary.json").read_text())["generations"][0]["device_figures"]
            if figures:
                break
            time.sleep(0.2)
    assert [(f["device_id"], f["fps"]) for f in figures] == [("nano-1", 321.0)]
    assert json.loads((run / "summary.json").read_text())["preprocess"] == {"size": 32}  # kept from before
