"""device-bench --layer-table: the table measured on the device's backend (ONNX Runtime here, a real process
on a real exported model), and its build logic with a timer whose times are known."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from contract import latency_table as lt
from contract.squeezenet_graph import genome_rows, network_model
from device.layer_table import build_table, remeasure_outliers, summary_lines

SMALL = {"num_classes": 3, "conv1": 32, "fires": [[16, 32, 32]] * 4 + [[16, 48, 48]] * 4}


class MacTimer(object):
    """A stand-in for BackendTimer whose latency is a known function of the model: 0.01 ms a call, plus
    1e-6 ms per MAC of its convs, plus 0.002 ms per conv (what a network has beyond its layers' sum)."""

    def __init__(self):
        self.calls = 0

    def time_ms(self, model, shape, runs, repeats=1):
        self.calls += 1
        proto = onnx.load_from_string(model)
        weights = {t.name: list(t.dims) for t in proto.graph.initializer}
        side = shape[2]
        total, convs = 0.01, 0
        for node in proto.graph.node:
            if node.op_type == "Conv":
                cout, cin, k, _ = weights[node.input[1]]
                stride = [a.ints for a in node.attribute if a.name == "strides"][0][0]
                pad = [a.ints for a in node.attribute if a.name == "pads"][0][0]
                out = (side + 2 * pad - k) // stride + 1
                total += cin * cout * k * k * out * out * 1e-6
                convs += 1
                side = out
            elif node.op_type == "MaxPool":
                side = int(np.ceil((side - 3) / 2.0)) + 1
        return total + (0.002 * convs if convs > 1 else 0.0)


def test_the_table_holds_every_grid_entry_and_predicts_whole_networks():
    timer = MacTimer()
    table = build_table(timer, SMALL, 48, 16, 16, "a test block", "onnxruntime", "fp32", "1.0", {"cpu": "test"},
                        fit_genomes=4, check_genomes=5)
    grids = lt.layer_grids(SMALL, 16)
    assert set(table["layers"]) == set(grids)
    for name, (cins, couts) in grids.items():
        assert table["layers"][name]["cin"] == cins and table["layers"][name]["cout"] == couts
    rows = {r.name: r for r in genome_rows(SMALL, 48)}
    conv1 = table["layers"]["conv1"]  # entries are the layer's own time: the per-call 0.01 ms is subtracted
    assert conv1["ms"][0][-1] == pytest.approx(rows["conv1"].macs * 1e-6, abs=1e-5)
    assert table["overhead_ms"] == pytest.approx(0.01)
    assert table["fit"]["intercept_ms"] == pytest.approx(0.01 + 26 * 0.002, abs=1e-4)  # the per-layer extra
    assert table["fit"]["scale"] == pytest.approx(1.0, abs=1e-3)
    assert table["check"]["within"] and len(table["check"]["genomes"]) == 5
    assert table["check"]["max_error"] < 0.01
    assert "self-check on 5 random genomes" in "\n".join(summary_lines(table))


def test_a_disturbed_check_measurement_is_measured_again():
    class Noisy(MacTimer):
        def time_ms(self, model, shape, runs, repeats=1):
            value = MacTimer.time_ms(self, model, shape, runs)
            return value * 3 if self.calls == 1 else value  # still disturbed the first time it is measured again
    timer = Noisy()
    truth = MacTimer().time_ms(network_model(SMALL, 48), (1, 3, 48, 48), 1)
    rows = [{"widths": SMALL, "predicted_ms": truth, "measured_ms": truth * 3}]
    remeasure_outliers(timer, {"fit": {}}, rows, 48)
    assert rows[0]["measured_ms"] == pytest.approx(truth, rel=1e-4) and rows[0]["remeasured"] == 2
    rows = [{"widths": SMALL, "predicted_ms": truth, "measured_ms": truth * 1.05}]  # within 10 %: left alone
    remeasure_outliers(timer, {"fit": {}}, rows, 48)
    assert "remeasured" not in rows[0] and timer.calls == 2


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "model.onnx"
    proto = onnx.load_from_string(network_model(SMALL, 48, batch="batch"))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "genome", json.dumps(SMALL)
    onnx.save(proto, str(path))
    return path


def test_device_bench_measures_a_table_on_onnx_runtime(small_model, tmp_path):
    out = tmp_path / "table.json"
    result = subprocess.run([sys.executable, "-m", "device.bench", "--model", str(small_model), "--layer-table",
                             str(out), "--backend", "onnxruntime"], capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr  # 1: the self-check missed on a busy machine, said so
    table = lt.load_table(str(out))
    assert table["backend"] == "onnxruntime" and table["image_size"] == 48 and table["parent"] == SMALL
    assert table["block"] in (8, 16) and table["step"] == table["block"]
    assert len(table["check"]["genomes"]) == 20 and table["fit"]["genomes"] == 10
    assert all(v >= 0 for layer in table["layers"].values() for line in layer["ms"] for v in line)
    assert "latency table: onnxruntime fp32 at 48 px" in result.stdout
    assert ("within the 10 %" in result.stdout) == (result.returncode == 0)
    assert lt.predict_ms(table, lt.widths_of(SMALL)) > 0


def test_a_model_without_a_genome_is_refused_in_one_line(tmp_path):
    path = tmp_path / "foreign.onnx"
    path.write_bytes(network_model(SMALL, 48))
    result = subprocess.run([sys.executable, "-m", "device.bench", "--model", str(path), "--layer-table",
                             str(tmp_path / "t.json"), "--backend", "onnxruntime"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no genome metadata" in result.stderr and "host-evolve exported" in result.stderr
    assert not (tmp_path / "t.json").exists()
