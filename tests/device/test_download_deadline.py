"""Every network wait bounded in total (issue 32, kind 3, the device's model download): a host that sends a byte at a
time within each read's timeout is given up on at the download's deadline, said in one line, nothing kept. A real
slow HTTP server on loopback."""
import time
from http.server import BaseHTTPRequestHandler

import pytest

import device.model_source as model_source
from contract.errors import DeviceError
from tests.device import loopback


class Trickle(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5000")
        self.end_headers()
        try:
            for _ in range(5000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_a_download_that_trickles_is_given_up_at_its_deadline(tmp_path, monkeypatch):
    assert model_source.download_deadline_s(3 * 1024 * 1024) == pytest.approx(78.0)
    monkeypatch.setattr(model_source, "DOWNLOAD_GRACE_S", 1.0)
    server, url = loopback.start(Trickle)
    try:
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"the download took over 1 s .* below 64 KB/s"):
            model_source.resolve_model(url + "/models/0/model.onnx", cache_dir=str(tmp_path))
        assert time.monotonic() - started < 10
    finally:
        loopback.stop(server)
    assert list((tmp_path / "models").iterdir()) == []  # not even the partial file


def test_a_model_cache_that_cannot_take_the_download_is_one_line(tmp_path):
    from tests.tiny_run import served_tiny_run
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should be\n")
    with served_tiny_run(tmp_path / "run", "cache-token-0123456789abcdef") as (server, _, _):
        with pytest.raises(DeviceError) as refused:
            model_source.resolve_model(server.url + "/models/0/model.onnx", cache_dir=str(blocker / "cache"))
    text = str(refused.value)
    assert text.startswith("model cache ") and "or give another --cache-dir" in text and "\n" not in text
