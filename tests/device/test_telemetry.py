"""Telemetry: percentiles, rates and the snapshot (platform probes: test_machine.py; /metrics: test_prometheus.py)."""
import pytest

from device.telemetry import LatencyMeter, RateMeter, Telemetry


def test_latency_percentiles():
    meter = LatencyMeter()
    assert meter.summary()["p50"] is None
    for ms in range(1, 101):
        meter.add(ms)
    summary = meter.summary()
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)


def test_rate_meter():
    rate = RateMeter(window_s=10)
    rate.start(now=100.0)
    for i in range(50):
        rate.tick(now=100.0 + (i + 1) * 0.02)
    assert rate.overall(now=101.0) == pytest.approx(50.0)
    assert rate.recent(now=101.0) == pytest.approx(50.0, rel=0.05)


def test_snapshot():
    telemetry = Telemetry("onnxruntime", "fp32", "ab" * 32, platform_monitors=False)
    telemetry.start()
    for _ in range(5):
        telemetry.stage("infer", 2.0)
        telemetry.stage("preprocess", 1.0)
        telemetry.frame_done(4.0, [("cat", 0.9), ("dog", 0.1)])
    snapshot = telemetry.snapshot()
    for key in ("frames", "fps", "latency_ms", "stages_ms", "dropped", "rss_mb", "gpu_mem_mb", "backend",
                "precision", "model_sha256"):
        assert key in snapshot
    assert snapshot["frames"] == 5 and snapshot["network_fps"] == pytest.approx(500.0)
    assert snapshot["latency_ms"]["p50"] == pytest.approx(4.0)
