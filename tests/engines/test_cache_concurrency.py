"""The engine cache shared by several real processes: one builder per key, atomic reads, and a reason (then a
rebuild) for an unreadable sidecar or a directory where a file belongs."""
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from contract.model_info import ModelInfo
from engines.build import BuildSettings, cached_engine_from_onnx
from engines.cache import CacheEntry
from engines.gpu import GpuInfo
from tests.engines.recording_tensorrt import recording_tensorrt
from tests.engines.test_cache import key
from tests.engines.tiny_onnx import tiny_onnx

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TX1 = GpuInfo("NVIDIA Tegra X1", (5, 3), 4 << 30)
SETTINGS = BuildSettings("fp16", 1, 1, 8)

BUILDER = r"""
import hashlib, json, os, sys, time
from contract.model_info import ModelInfo
from engines.build import BuildSettings, cached_engine_from_onnx
from engines.gpu import GpuInfo
from tests.engines.recording_tensorrt import recording_tensorrt
onnx, cache, go, ready = sys.argv[1:5]
trt = recording_tensorrt("8.2.1.8")
slow = trt.Builder
waiting = os.path.join(os.path.dirname(go), "waiting")
class SlowBuilder(slow):  # a TensorRT build takes minutes on a Jetson: this one lasts until the other process
    def build_serialized_network(self, network, config):  # says it waits for it (an event, not a time)
        deadline = time.monotonic() + 300
        while not os.path.exists(waiting) and time.monotonic() < deadline:
            time.sleep(0.005)
        return slow.build_serialized_network(self, network, config)
trt.Builder = SlowBuilder
info = ModelInfo.from_onnx(onnx)
open(ready, "w").close()  # imported and about to wait: the test starts both only when both say so
while not os.path.exists(go):
    time.sleep(0.001)
messages = []
def log(message):
    messages.append(message)
    if "another process is building" in message:
        open(waiting, "w").close()
entry, data, sidecar, built = cached_engine_from_onnx(trt, info, BuildSettings("fp16", 1, 1, 8),
                                                      GpuInfo("NVIDIA Tegra X1", (5, 3), 4 << 30), cache,
                                                      log=log)
print(json.dumps({"built": built, "sha": hashlib.sha256(data).hexdigest(), "sidecar_sha": sidecar["engine_sha256"],
                  "messages": messages}))
"""

CHURNER = r"""
import os, sys, time
from contract.model_info import ModelInfo
from engines.build import BuildSettings
from engines.cache import CacheEntry, EngineKey
from engines import tensorrt_api
folder, key_json, ready, stop = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
import json
fields = json.loads(key_json)
key = EngineKey(fields["onnx_sha256"], fields["tensorrt_version"], fields["gpu_name"], fields["compute_capability"],
                fields["precision"], fields["batch_profile"], fields["calibration"])
entry = CacheEntry(folder, key)
rounds = 0
while not os.path.exists(stop):  # another process rewriting and removing this entry as fast as it can
    entry.store(os.urandom(1 << 16))
    if rounds % 3 == 0:
        entry.invalidate()
    rounds += 1
    if rounds == 1:
        open(ready, "w").close()
print(rounds)
"""


def env():
    return dict(os.environ, PYTHONPATH=PROJECT)


def test_two_processes_build_one_engine_once(tmp_path):
    cache = str(tmp_path / "cache")
    go = str(tmp_path / "go")
    onnx = tiny_onnx()
    ready = [str(tmp_path / "ready-{}".format(i)) for i in range(2)]
    racers = [subprocess.Popen([sys.executable, "-c", BUILDER, onnx, cache, go, ready[i]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, env=env(), cwd=PROJECT)
              for i in range(2)]
    deadline = time.monotonic() + 120
    while not all(os.path.exists(path) for path in ready) and time.monotonic() < deadline:
        time.sleep(0.01)  # however slow the imports, neither starts before the other is waiting
    open(go, "w").close()
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["built"] for r in results) == [False, True]  # one built, the other loaded its engine
    waited = [r for r in results if not r["built"]][0]
    assert any("another process is building" in m for m in waited["messages"])
    assert any("built by another process" in m for m in waited["messages"])
    assert results[0]["sha"] == results[1]["sha"] == results[0]["sidecar_sha"] == results[1]["sidecar_sha"]


def test_reads_are_atomic_while_another_process_rewrites_the_entry(tmp_path):
    """Each returned engine matches the sidecar returned with it; no FileNotFoundError mid-read."""
    info = ModelInfo.from_onnx(tiny_onnx())
    trt = recording_tensorrt("8.2.1.8")
    cache = str(tmp_path / "cache")
    entry, _, _, _ = cached_engine_from_onnx(trt, info, SETTINGS, TX1, cache, log=lambda m: None)
    ready, stop = str(tmp_path / "churning"), str(tmp_path / "stop")
    churner = subprocess.Popen([sys.executable, "-c", CHURNER, os.path.dirname(entry.engine_path),
                                json.dumps(entry.key.fields), ready, stop], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, env=env(), cwd=PROJECT)
    deadline = time.monotonic() + 120  # a bound, not a speed
    while not os.path.exists(ready):  # the other process is rewriting: an event, not a time
        assert churner.poll() is None and time.monotonic() < deadline, churner.communicate()[1]
        time.sleep(0.01)
    reads = mismatched = 0
    try:
        for reads in range(1, 51):  # a count of reads, not a rate: a busy machine only takes longer
            _, data, sidecar, _ = cached_engine_from_onnx(trt, info, SETTINGS, TX1, cache, log=lambda m: None)
            if hashlib.sha256(data).hexdigest() != sidecar["engine_sha256"] or len(data) != sidecar["engine_bytes"]:
                mismatched += 1
    finally:
        open(stop, "w").close()
    out, err = churner.communicate(timeout=120)
    assert churner.returncode == 0, err
    print("{} reads during {} rewrites by another process: {} mismatched".format(reads, out.strip(), mismatched))
    assert reads == 50 and int(out) > 0 and mismatched == 0


@contextlib.contextmanager
def unprivileged():
    """Run the block as 'nobody' when the tests run as root (root reads any file whatever its mode)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_sidecar_is_a_reason_then_rebuilt():
    folder = tempfile.mkdtemp(prefix="squishednets-cache-")  # under /tmp, which 'nobody' may enter
    try:
        os.chmod(folder, 0o777)
        entry = CacheEntry(folder, key())
        entry.store(b"engine" * 10)
        os.chmod(entry.sidecar_path, 0)
        with unprivileged():
            reason = entry.check()
            assert "cannot be read" in reason and entry.sidecar_path in reason
            entry.store(b"engine" * 10)  # the rebuild replaces it
            assert entry.check() is None
    finally:
        import shutil
        shutil.rmtree(folder)


@pytest.mark.parametrize("which", ["engine_path", "sidecar_path"])
def test_a_directory_where_a_cache_file_belongs_is_a_reason_then_moved_aside(tmp_path, which):
    entry = CacheEntry(str(tmp_path), key())
    if which == "sidecar_path":
        entry.store(b"engine")
        os.remove(entry.sidecar_path)
    os.makedirs(getattr(entry, which))
    reason = entry.check()
    assert "is a directory" in reason
    entry.store(b"engine")
    assert entry.check() is None
    assert [n for n in os.listdir(str(tmp_path)) if ".not-a-file-" in n]  # kept, not deleted


def test_a_directory_in_the_engines_place_is_rebuilt_through_the_builder(tmp_path):
    info = ModelInfo.from_onnx(tiny_onnx())
    trt = recording_tensorrt("8.2.1.8")
    entry, data, _, _ = cached_engine_from_onnx(trt, info, SETTINGS, TX1, str(tmp_path), log=lambda m: None)
    entry.invalidate()
    os.makedirs(entry.engine_path)
    messages = []
    _, again, _, built = cached_engine_from_onnx(trt, info, SETTINGS, TX1, str(tmp_path), log=messages.append)
    assert built and again == data and any("is a directory" in m for m in messages)
    entry.invalidate()  # a directory or a missing file: never a traceback
    entry.invalidate()
