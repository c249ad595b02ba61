"""report.png draws only what exists: no images/s axis when no speed was measured (the demo)."""
from host.run.layout import RunLayout
from host.run.report import plot_report, pareto_front


def summary(fps=None, target=None):
    gens = [{"generation": g, "size_mb": 2.9 - g, "size_bytes": int((2.9 - g) * 1e6), "macs": 60e6 - g * 10e6,
             "top1": 0.9 - 0.01 * g, "local_fps": fps and fps + 100 * g, "device_fps": None} for g in range(3)]
    return {"generations": gens, "pareto": pareto_front(gens), "target_fps": target}


def test_no_speed_axis_without_a_measured_or_targeted_speed(tmp_path):
    layout = RunLayout(tmp_path)
    drawn = plot_report(layout, summary())
    assert not any(label.startswith("images/s") for label in drawn) and "MB" in drawn
    assert layout.report.stat().st_size > 10_000


def test_speed_axis_when_a_speed_was_measured_or_targeted(tmp_path):
    assert "images/s (from 0)" in plot_report(RunLayout(tmp_path), summary(fps=1000.0))
    assert "images/s (from 0)" in plot_report(RunLayout(tmp_path), summary(target=2000.0))
