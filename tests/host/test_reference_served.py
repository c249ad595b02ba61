"""The documented Jetson path checks the engine too (issue 31, kind 5): host-serve serves a generation's
reference.npz, checked against the sha256 card.json records; device-serve fetching the model from host-serve keeps
it beside the cached model and compares its backend with it. The real app on loopback, device-serve in a real
process."""
import subprocess
import sys

import pytest

httpx = pytest.importorskip("httpx")

from tests.host.test_serve import TOKEN  # noqa: E402
from tests.tiny_run import served_tiny_run  # noqa: E402


def test_the_reference_is_served_fetched_beside_the_cached_model_and_checked(tmp_path):
    import hashlib
    with served_tiny_run(tmp_path / "run", TOKEN) as (server, run, card):
        answer = httpx.get(server.url + "/models/0/reference.npz")
        assert answer.status_code == 200
        assert answer.headers["X-SHA256"] == card["reference"]["sha256"] == hashlib.sha256(answer.content).hexdigest()
        (run / "gen-00" / "reference.npz").write_bytes(answer.content + b"x")  # changed on the host: not served
        assert httpx.get(server.url + "/models/0/reference.npz").status_code == 503
        (run / "gen-00" / "reference.npz").write_bytes(answer.content)
        cache = tmp_path / "cache"
        done = subprocess.run([sys.executable, "-m", "device.serve", "--model", server.url + "/models/best/model.onnx",
                               "--source", "synthetic", "--frames", "2", "--headless", "--warmup", "0",
                               "--status-every", "0", "--backend", "onnxruntime", "--cache-dir", str(cache)],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "(sha256 verified)" in done.stdout and "device-serve: check: " in done.stdout, done.stdout
    assert (cache / "models" / (card["sha256"] + ".reference.npz")).is_file()
    assert "no reference outputs" not in done.stdout
