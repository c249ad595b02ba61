"""The latency table's pure part (contract/latency_table.py) and the ONNX it times (contract/onnx_writer.py,
contract/squeezenet_graph.py): every model written is checked by onnx.checker and run by ONNX Runtime against
a numpy reference; predictions of known genomes are worked by hand."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from contract import latency_table as lt
from contract.errors import ContractError
from contract.squeezenet_graph import conv_rows, genome_rows, layer_model, network_model, null_model

ANCESTOR = {"num_classes": 10, "conv1": 64, "fires": [[16, 64, 64], [16, 64, 64], [32, 128, 128], [32, 128, 128],
                                                    [48, 192, 192], [48, 192, 192], [64, 256, 256], [64, 256, 256]]}
SMALL = {"num_classes": 3, "conv1": 16, "fires": [[8, 16, 16]] * 8}


def run(model, x):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"input_0": x})[0]


def test_written_models_are_valid_onnx_with_the_exported_graphs_shape():
    for model in (network_model(SMALL, 32), network_model(SMALL, 32, batch="batch"), null_model(8),
                  layer_model(genome_rows(SMALL, 32)[3], 8, 16)):
        proto = onnx.load_from_string(model)
        onnx.checker.check_model(proto, full_check=True)
    ops = [node.op_type for node in onnx.load_from_string(network_model(SMALL, 32)).graph.node]
    assert ops.count("Conv") == 26 and ops.count("MaxPool") == 3 and ops.count("Concat") == 8
    assert ops[-2:] == ["GlobalAveragePool", "Flatten"]


def test_a_layer_model_computes_conv_relu_and_the_mean_as_numpy_does():
    row = genome_rows(SMALL, 32)[3]  # fire2.expand3x3: 3x3, pad 1
    assert row.name == "fire2.expand3x3" and row.kernel == 3 and row.pad == 1
    model = layer_model(row, 8, 16, seed=3)
    proto = onnx.load_from_string(model)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    x = np.random.RandomState(0).standard_normal((1, 8, row.side_in, row.side_in)).astype(np.float32)
    w, b = weights["layer.weight"], weights["layer.bias"]
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    side = row.side_in
    out = np.zeros((16, side, side), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], padded[:, i:i + side, j:j + side])
    expected = np.maximum(out + b[:, None, None], 0).mean(axis=(1, 2))
    np.testing.assert_allclose(run(model, x)[0], expected, rtol=1e-4, atol=1e-5)


def test_the_whole_network_runs_and_the_shapes_agree_with_the_genome():
    out = run(network_model(SMALL, 48), np.zeros((1, 3, 48, 48), dtype=np.float32))
    assert out.shape == (1, 3)
    rows = conv_rows(3, 16, SMALL["fires"], 48)
    assert [r.side_out for r in rows][:2] == [23, 11] and rows[-1].cin == 32


def test_grids_hold_the_widths_the_evolution_may_draw():
    assert lt.grid(64, 16) == [16, 32, 48, 64]
    assert lt.grid(40, 16) == [16, 32, 40]  # rounding up is capped at the parent's width
    assert lt.grid(8, 16) == [8]
    grids = lt.layer_grids(ANCESTOR, 16)
    assert list(grids)[:4] == ["conv1", "fire2.squeeze", "fire2.expand1x1", "fire2.expand3x3"]
    assert grids["conv1"] == ([3], [16, 32, 48, 64])
    assert grids["fire2.squeeze"][0] == [16, 32, 48, 64]  # reads conv1
    assert grids["fire2.expand3x3"][0] == [16]  # reads fire2's squeeze
    assert grids["fire3.squeeze"][0] == list(range(32, 129, 16))  # every sum of fire2's two expands
    assert grids["conv10"][1] == [10]  # the classes are never cut
    assert lt.entries(grids) == sum(len(a) * len(b) for a, b in grids.values())


def test_channel_block_is_read_from_the_cpu_flags_and_the_precision():
    assert lt.channel_block("onnxruntime", ["avx", "avx2", "fma"])[0] == 8
    assert lt.channel_block("onnxruntime", ["avx2", "avx512f"])[0] == 16
    assert lt.channel_block("onnxruntime", [])[0] == 8
    assert lt.channel_block("tensorrt", [], "fp16")[0] == 8
    assert lt.channel_block("tensorrt", [], "int8")[0] == 32


def linear_table(parent, image_size, step, per_mac_ms=1e-6, intercept=0.05, scale=1.0):
    """A table whose every entry is its layer's MACs x ``per_mac_ms``: predictions can be worked by hand."""
    rows = {row.name: row for row in genome_rows(parent, image_size)}
    layers = {}
    for name, (cins, couts) in lt.layer_grids(parent, step).items():
        row = rows[name]
        per = row.kernel * row.kernel * row.side_out * row.side_out
        layers[name] = {"cin": cins, "cout": couts, "ms": [[cin * cout * per * per_mac_ms for cout in couts]
                                                           for cin in cins]}
    return {"format": lt.FORMAT, "backend": "onnxruntime", "precision": "fp32", "image_size": image_size, "num_classes": parent["num_classes"], "parent": parent,
            "step": step, "block": step, "layers": layers, "fit": {"intercept_ms": intercept, "scale": scale}}


def test_predicted_latency_of_a_known_genome():
    table = linear_table(ANCESTOR, 112, 16)
    macs = sum(r.macs for r in genome_rows(ANCESTOR, 112))
    assert lt.predict_ms(table, lt.widths_of(ANCESTOR)) == pytest.approx(0.05 + macs * 1e-6)
    half = dict(ANCESTOR, conv1=32)
    half_macs = sum(r.macs for r in genome_rows(half, 112))
    assert lt.predict_ms(table, lt.widths_of(half)) == pytest.approx(0.05 + half_macs * 1e-6)
    table["fit"] = {"intercept_ms": 0.1, "scale": 2.0}
    assert lt.predict_ms(table, lt.widths_of(half)) == pytest.approx(0.1 + 2 * half_macs * 1e-6)


def test_real_widths_interpolate_between_grid_points_and_clamp_at_the_ends():
    layer = {"cin": [16, 32], "cout": [16, 32], "ms": [[1.0, 2.0], [3.0, 4.0]]}
    assert lt.layer_ms(layer, 16, 16) == 1.0 and lt.layer_ms(layer, 32, 32) == 4.0
    assert lt.layer_ms(layer, 24, 16) == pytest.approx(2.0)
    assert lt.layer_ms(layer, 24, 24) == pytest.approx(2.5)
    assert lt.layer_ms(layer, 8, 8) == 1.0 and lt.layer_ms(layer, 64, 64) == 4.0  # clamped, not extrapolated


def test_the_fit_and_the_self_check():
    intercept, scale = lt.fit_line([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert intercept == pytest.approx(0.5) and scale == pytest.approx(1.0)
    assert lt.fit_line([2.0], [3.0]) == (0.0, pytest.approx(1.5))
    with pytest.raises(ContractError):
        lt.fit_line([], [])
    check = lt.check_summary([{"predicted_ms": 1.05, "measured_ms": 1.0}, {"predicted_ms": 0.8, "measured_ms": 1.0}])
    assert check["max_error"] == pytest.approx(0.2) and not check["within"]
    assert lt.check_summary([{"predicted_ms": 1.05, "measured_ms": 1.0}])["within"]


def test_random_genomes_stay_on_the_grid():
    rng = np.random.RandomState(0)
    for _ in range(20):
        widths = lt.random_widths(ANCESTOR, 16, rng)
        parent = lt.widths_of(ANCESTOR)
        assert all(w <= parent[name] and (w % 16 == 0 or w == parent[name]) for name, w in widths.items())


def test_a_table_says_why_it_cannot_price_a_run(tmp_path):
    table = linear_table(ANCESTOR, 112, 16)
    assert lt.covers(table, ANCESTOR, 112) is None
    assert "112 px" in lt.covers(table, ANCESTOR, 96)
    assert "10 classes" in lt.covers(table, dict(ANCESTOR, num_classes=4), 112)
    narrow = linear_table(dict(ANCESTOR, conv1=32), 112, 16)
    assert "conv1" in lt.covers(narrow, ANCESTOR, 112)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    assert lt.load_table(str(path))["step"] == 16
    path.write_text("{}")
    with pytest.raises(ContractError, match="not a latency table"):
        lt.load_table(str(path))
    damaged = dict(table, layers=dict(table["layers"], conv1={"cin": [3], "cout": [16, 32], "ms": [[1.0]]}))
    path.write_text(json.dumps(damaged))
    with pytest.raises(ContractError, match=r"damaged \(layer conv1's ms is not 1 x 2\)"):
        lt.load_table(str(path))
    path.write_text(json.dumps({k: v for k, v in table.items() if k != "fit"}))
    with pytest.raises(ContractError, match="damaged .no fit"):
        lt.load_table(str(path))
    with pytest.raises(ContractError, match="device-bench --layer-table"):
        lt.load_table(str(tmp_path / "missing.json"))


def test_the_cache_key_changes_with_what_makes_tables_differ():
    base = ("onnxruntime", "fp32", {"cpu": "x", "flags": ["avx2"]}, "1.32.0", 112, ANCESTOR, 16)
    key = lt.cache_key(*base)
    for index, other in ((0, "tensorrt"), (1, "fp16"), (2, {"cpu": "x", "flags": ["avx512f"]}), (3, "1.33.0"),
                         (4, 96), (5, dict(ANCESTOR, conv1=32)), (6, 8)):
        changed = list(base)
        changed[index] = other
        assert lt.cache_key(*changed) != key
    assert lt.cache_key(*base) == key
