"""Telemetry: percentiles, rates, process figures, tegrastats parsing on real sample lines, Prometheus text."""
import time

import pytest

from device.telemetry import (LatencyMeter, RateMeter, TegrastatsMonitor, Telemetry, parse_meminfo,
                              parse_tegrastats, process_rss_mb, process_started_at, prometheus_text)

# The line from REFERENCE.md (a TX1 on JetPack 4.6), and a Xavier NX line of JetPack 5 (other rails, mW units).
TX1_LINE = ("RAM 330/3964MB (lfb 1x4MB) SWAP 0/1982MB (cached 0MB) CPU [12%@102,off,3%@102,1%@102] EMC_FREQ 0% "
            "GR3D_FREQ 45% PLL@22C CPU@24.5C PMIC@100C GPU@22.5C AO@29.5C thermal@23.75C POM_5V_IN 933/933 "
            "POM_5V_GPU 0/0 POM_5V_CPU 79/79")
NX_LINE = ("RAM 2345/7771MB (lfb 1x1MB) SWAP 0/3885MB (cached 0MB) CPU [5%@1190,2%@1190,0%@1190,1%@1190,off,off] "
           "EMC_FREQ 2%@1600 GR3D_FREQ 0%@306 AUX@36.5C CPU@38C thermal@37.45C AO@37C GPU@36.5C PMIC@50C "
           "VDD_IN 4321mW/4321mW VDD_CPU_GPU_CV 412mW/412mW VDD_SOC 1234mW/1234mW")


def test_parse_tegrastats_tx1_line():
    parsed = parse_tegrastats(TX1_LINE)
    assert parsed["ram_used_mb"] == 330 and parsed["ram_total_mb"] == 3964
    assert parsed["cpu_percent"] == [12, None, 3, 1]
    assert parsed["gpu_percent"] == 45 and parsed["emc_percent"] == 0
    assert parsed["temperatures_c"]["GPU"] == 22.5 and parsed["temperatures_c"]["CPU"] == 24.5
    assert parsed["power_mw"]["POM_5V_IN"] == (933, 933) and parsed["power_mw"]["POM_5V_CPU"] == (79, 79)


def test_parse_tegrastats_jetpack5_line():
    parsed = parse_tegrastats(NX_LINE)
    assert parsed["ram_used_mb"] == 2345 and parsed["gpu_percent"] == 0
    assert parsed["power_mw"]["VDD_IN"] == (4321, 4321)
    assert parsed["temperatures_c"]["CPU"] == 38.0
    assert parse_tegrastats("garbage") == {}


def test_tegrastats_monitor_is_absent_without_tegrastats():
    assert TegrastatsMonitor(command="/nonexistent/tegrastats").start() is False


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


def test_process_figures():
    assert 5 < process_rss_mb() < 10000
    assert abs(process_started_at() - time.time()) < 3600
    assert parse_meminfo("MemTotal:  2048 kB\nMemAvailable:   1024 kB\n") == {"MemTotal": 2.0, "MemAvailable": 1.0}


def test_snapshot_and_prometheus_text():
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
    text = prometheus_text(snapshot)
    assert "squishednets_frames_total 5.0" in text
    assert 'squishednets_stage_latency_ms{quantile="0.5",stage="infer"} 2.0' in text
    assert "# TYPE squishednets_fps gauge" in text
