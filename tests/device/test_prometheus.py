"""device.prometheus: a real telemetry snapshot as Prometheus text, written by prometheus_client, parsed back by
its parser, and checked by Prometheus' own linter (``promtool check metrics``, Debian's prometheus package)."""
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from device.prometheus import prometheus_text
from device.telemetry import LATENCY_BUCKETS_MS, Telemetry


def telemetry_text(frames=5, memory=None):
    telemetry = Telemetry("onnxruntime", "fp32", "ab" * 32, platform_monitors=False)
    telemetry.start()
    for index in range(frames):
        telemetry.stage("infer", 2.0 if index < frames - 1 else 30.0)
        telemetry.frame_done(4.0, [("cat", 0.9)])
    snapshot = telemetry.snapshot()
    if memory is not None:
        snapshot["memory"] = memory
    return prometheus_text(snapshot, telemetry.histograms())


def families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text, name):
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def test_snapshot_as_prometheus_text_in_base_units_with_histograms():
    text = telemetry_text(memory={"temperatures_c": {"GPU": 41.5}, "power_mw": {"VDD_IN": [4200, 4000]},
                                  "mem_available_mb": 1500.0})
    found = families(text)
    assert found["squishednets_frames"].type == "counter" and samples(text, "squishednets_frames_total") == [({}, 5.0)]
    assert found["squishednets_model_info"].type == "gauge"  # an info metric, in the text format
    assert samples(text, "squishednets_model_info") == [(
        {"backend": "onnxruntime", "precision": "fp32", "model_sha256": "ab" * 32}, 1.0)]
    assert found["squishednets_stage_latency_seconds"].type == "histogram"
    infer = {labels["le"]: value for labels, value in samples(text, "squishednets_stage_latency_seconds_bucket")
             if labels["stage"] == "infer"}
    # four frames at 2 ms (le 0.002 holds them: "le" is "at most"), one at 30 ms (le 0.05), all five at +Inf
    assert infer["0.001"] == 0 and infer["0.002"] == 4 and infer["0.02"] == 4 and infer["0.05"] == 5
    assert infer["+Inf"] == 5 and len(infer) == len(LATENCY_BUCKETS_MS) + 1
    assert samples(text, "squishednets_stage_latency_seconds_sum")[2][1] == pytest.approx(0.038)
    assert samples(text, "squishednets_frame_latency_seconds_count") == [({}, 5.0)]
    assert samples(text, "squishednets_temperature_celsius") == [({"sensor": "GPU"}, 41.5)]
    assert samples(text, "squishednets_power_watts") == [({"rail": "VDD_IN"}, 4.2)]
    assert samples(text, "squishednets_memory_available_bytes") == [({}, 1.5e9)]
    assert "process_resident_memory_bytes" in text or "process_" not in text  # Linux: the process metrics
    assert "_ms" not in text and "megabytes" not in text and 'quantile="' not in text


def test_label_values_are_escaped_and_missing_figures_left_out():
    text = prometheus_text({"backend": 'a"b\\c', "frames": None})
    assert 'backend="a\\"b\\\\c"' in text
    assert samples(text, "squishednets_frames_total") == []
    assert "# TYPE squishednets_frames_total counter" in text or "# TYPE squishednets_frames counter" in text


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus; scripts/test.sh does it)")
def test_promtool_check_metrics_finds_nothing():
    text = telemetry_text(memory={"temperatures_c": {"GPU": 41.5}, "power_mw": {"VDD_IN": [4200, 4000]},
                                  "mem_available_mb": 1500.0})
    done = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout
