"""device.prometheus: a real telemetry snapshot as Prometheus text exposition."""
from device.prometheus import prometheus_text
from device.telemetry import Telemetry


def test_snapshot_as_prometheus_text():
    telemetry = Telemetry("onnxruntime", "fp32", "ab" * 32, platform_monitors=False)
    telemetry.start()
    for _ in range(5):
        telemetry.stage("infer", 2.0)
        telemetry.frame_done(4.0, [("cat", 0.9)])
    text = prometheus_text(telemetry.snapshot())
    assert "squishednets_frames_total 5.0" in text
    assert 'squishednets_stage_latency_ms{quantile="0.5",stage="infer"} 2.0' in text
    assert "# TYPE squishednets_fps gauge" in text
    assert 'squishednets_info{backend="onnxruntime",model_sha256="' + "ab" * 32 + '",precision="fp32"} 1.0' in text


def test_label_values_are_escaped_and_missing_figures_left_out():
    text = prometheus_text({"backend": 'a"b\\c', "frames": None})
    assert 'backend="a\\"b\\\\c"' in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(line.startswith("squishednets_frames_total") for line in samples)
    assert "# TYPE squishednets_frames_total counter" in text
