"""The device's model download against the REAL host-serve app (uvicorn on loopback, a real run folder):
the URL comes from GET /generations under the one key both sides share, and its sha256 is verified, so a
model changed on the host after it was listed is refused and nothing of it is cached."""
import os
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from device.agent_follow import Agent  # noqa: E402
from contract.errors import DeviceError  # noqa: E402
from contract.report_schema import MODEL_URL_KEY  # noqa: E402
from device.model_source import list_generations, resolve_model, split_url  # noqa: E402
from tests.host.test_serve import TOKEN  # noqa: E402
from tests.tiny_run import served_tiny_run  # noqa: E402


@pytest.fixture()
def served_run(tmp_path):
    with served_tiny_run(tmp_path / "run", TOKEN) as served:
        yield served


def cached_models(cache: Path) -> list:
    folder = cache / "models"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_listing_carries_the_shared_key_with_the_sha256_fragment(served_run, tmp_path):
    server, run, card = served_run
    entry = list_generations(server.url)[0]
    assert MODEL_URL_KEY == "model_url" and "onnx_url" not in entry
    assert entry[MODEL_URL_KEY] == server.url + "/models/0/model.onnx#sha256=" + card["sha256"]
    assert split_url(entry[MODEL_URL_KEY])[1] == card["sha256"]
    # the fragment alone is the expectation: the download is verified with no other argument
    path = resolve_model(entry[MODEL_URL_KEY], cache_dir=str(tmp_path / "cache"))
    assert Path(path).name == card["sha256"] + ".onnx"
    assert Path(path).read_bytes() == (run / "gen-00" / "model.onnx").read_bytes()


def test_a_model_changed_after_the_host_checked_it_is_refused_by_the_host_before_it_is_sent(served_run, tmp_path):
    """Same size and mtime, other bytes: host-serve's per-version cache cannot see it, but a model file is read once
    and the bytes checked are the bytes sent, so the host refuses it (503) and the device keeps nothing."""
    server, run, card = served_run
    cache = tmp_path / "cache"
    entry = list_generations(server.url)[0]
    resolve_model(entry[MODEL_URL_KEY], cache_dir=str(tmp_path / "warm"))  # the host has now checked this version
    onnx = run / "gen-00" / "model.onnx"
    data, stat = onnx.read_bytes(), onnx.stat()
    tampered = data[:-16] + bytes(b ^ 0xFF for b in data[-16:])
    onnx.write_bytes(tampered)
    os.utime(onnx, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DeviceError, match="answered HTTP 503.*does not match its sha256"):
        resolve_model(entry[MODEL_URL_KEY], cache_dir=str(cache))
    assert cached_models(cache) == []  # nothing kept, not even the partial file


def test_a_host_that_sends_other_bytes_than_it_announces_is_refused_by_the_device(served_run, tmp_path):
    """The device's own sha256 of the download stands behind the host's: a server announcing one digest and
    sending other bytes (a proxy's cache, a broken mirror) leaves nothing in the cache."""
    from http.server import BaseHTTPRequestHandler
    from tests.device import loopback
    _, run, card = served_run
    body = (run / "gen-00" / "model.onnx").read_bytes()[:-1] + b"\0"

    class Lying(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("X-SHA256", card["sha256"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    server, url = loopback.start(Lying)
    try:
        with pytest.raises(DeviceError, match="the download has sha256 .* but {} was expected; it was corrupted"
                           .format(card["sha256"])):
            resolve_model(url + "/models/0/model.onnx", cache_dir=str(tmp_path / "cache"))
    finally:
        loopback.stop(server)
    assert cached_models(tmp_path / "cache") == []


def test_a_model_changed_on_the_host_is_refused_before_it_is_sent(served_run, tmp_path):
    server, run, card = served_run
    cache = tmp_path / "cache"
    onnx = run / "gen-00" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    entry = list_generations(server.url)[0]
    with pytest.raises(DeviceError, match="answered HTTP 503.*does not match its sha256") as refused:
        resolve_model(entry[MODEL_URL_KEY], cache_dir=str(cache))
    assert cached_models(cache) == []
    assert str(run) not in str(refused.value)  # the host's file system stays private (its own log says it)


def test_the_agent_refuses_a_tampered_model_it_found_through_generations(served_run, tmp_path):
    """device-agent end to end against host-serve: it lists, finds generation 0 under ``model_url``, and a model
    whose bytes are not the listed sha256 is not benchmarked (host-serve refuses to send it: retried later,
    nothing cached)."""
    server, run, card = served_run
    onnx = run / "gen-00" / "model.onnx"
    list_generations(server.url)
    resolve_model(server.url + "/models/0/model.onnx", cache_dir=str(tmp_path / "warm"))  # host checks this version
    data, stat = onnx.read_bytes(), onnx.stat()
    onnx.write_bytes(data[:-16] + bytes(b ^ 0xFF for b in data[-16:]))
    os.utime(onnx, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    logged = []
    agent = Agent(server.url, TOKEN, device_id="jetson-t", cache_dir=str(tmp_path / "agent"), log=logged.append)
    try:
        entries = agent.list_new()
        assert [e["generation"] for e in entries] == [0]
        assert agent.model_url(entries[0]) == server.url + "/models/0/model.onnx"
        assert agent.process(entries[0]) == "retry"
    finally:
        agent.close()
    assert any("does not match its sha256" in line and "generation 0" in line for line in logged), logged
    assert cached_models(tmp_path / "agent") == []
