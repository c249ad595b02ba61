"""The engine cache on real files: key, sidecar, and every reason an entry must be rebuilt, never loaded."""
import json
import os

from contract.files import atomic_write
from engines.cache import CacheEntry, EngineKey


def key(**changes):
    fields = dict(onnx_sha256="ab" * 32, tensorrt_version="8.2.1.8", gpu_name="NVIDIA Tegra X1",
                  compute_capability="5.3", precision="fp16", batch_profile=(1, 1, 8))
    fields.update(changes)
    return EngineKey(**fields)


def test_key_names_every_dependency_and_changes_with_each():
    base = key()
    assert base.file_stem().startswith("abababababab-fp16-b1_1_8-")
    variants = [key(onnx_sha256="cd" * 32), key(tensorrt_version="10.3.0"), key(gpu_name="Orin"),
                key(compute_capability="8.7"), key(precision="fp32"), key(batch_profile=(1, 8, 8)),
                key(calibration="sig")]
    digests = {base.digest} | {variant.digest for variant in variants}
    assert len(digests) == len(variants) + 1


def test_store_then_check_loads(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    assert entry.check() == "no cached engine"
    sidecar = entry.store(b"engine-bytes" * 100, {"build_seconds": 1.5})
    assert entry.check() is None
    assert entry.read() == b"engine-bytes" * 100
    on_disk = json.loads(open(entry.sidecar_path).read())
    assert on_disk == sidecar and on_disk["key"] == key().fields and on_disk["engine_bytes"] == 1200
    assert not [name for name in os.listdir(str(tmp_path)) if name.endswith(".partial")]


def test_truncated_engine_is_rebuilt(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    entry.store(b"x" * 1000)
    with open(entry.engine_path, "r+b") as handle:
        handle.truncate(500)
    assert "truncated" in entry.check()


def test_corrupted_engine_of_same_size_is_rebuilt(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    entry.store(b"x" * 1000)
    with open(entry.engine_path, "wb") as handle:
        handle.write(b"y" * 1000)
    assert "sha256" in entry.check()


def test_foreign_engine_without_sidecar_is_not_trusted(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    with open(entry.engine_path, "wb") as handle:
        handle.write(b"someone else's engine")
    assert "no sidecar" in entry.check()


def test_sidecar_for_another_key_is_rebuilt(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    entry.store(b"engine")
    sidecar = json.loads(open(entry.sidecar_path).read())
    sidecar["key"]["tensorrt_version"] = "10.3.0"  # an engine from another TensorRT under this name
    with open(entry.sidecar_path, "w") as handle:
        json.dump(sidecar, handle)
    assert "another key" in entry.check()
    with open(entry.sidecar_path, "w") as handle:
        handle.write("{not json")
    assert "not JSON" in entry.check()


def test_invalidate_removes_both(tmp_path):
    entry = CacheEntry(str(tmp_path), key())
    entry.store(b"engine")
    entry.invalidate()
    assert not os.path.exists(entry.engine_path) and not os.path.exists(entry.sidecar_path)


def test_atomic_write_replaces_and_leaves_no_partial(tmp_path):
    path = str(tmp_path / "sub" / "file.bin")
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert open(path, "rb").read() == b"two"
    assert os.listdir(str(tmp_path / "sub")) == ["file.bin"]


def test_the_key_tells_a_tx1_from_a_nano_and_one_build_setting_from_another():
    """Both are "NVIDIA Tegra X1", sm_53; the SM count differs (2 and 1). The workspace changes the tactics."""
    from engines.cache import KEY_VERSION, EngineKey
    from engines.gpu import GpuInfo
    tx1, nano = GpuInfo("NVIDIA Tegra X1", (5, 3), 4 << 30, 2), GpuInfo("NVIDIA Tegra X1", (5, 3), 4 << 30, 1)
    assert tx1.slug() != nano.slug() and tx1.slug().endswith("-2sm")

    def key(gpu, workspace=256):
        return EngineKey("a" * 64, "8.2.1.8", gpu.name, gpu.capability_text, "fp16", (1, 1, 1), None,
                         gpu.multiprocessors, {"workspace_mb": workspace})
    assert key(tx1).digest != key(nano).digest
    assert key(tx1).digest != key(tx1, 512).digest
    assert key(tx1).digest == key(tx1).digest and key(tx1).fields["key_version"] == KEY_VERSION >= 2
