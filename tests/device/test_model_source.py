"""resolve_model against a real http.server on loopback: download once, sha256 verified, cached; and the
clear errors for a missing file, an unreachable URL, a 404 and a digest mismatch."""
import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from contract.errors import DeviceError
from device.model_source import list_generations, resolve_model, split_url
from tests.engines.tiny_onnx import tiny_onnx


class ModelServer(object):
    """host-serve's two model routes, served from memory; counts model requests."""

    def __init__(self, data, announce=True, lie=False):
        self.data, self.announce, self.lie = data, announce, lie
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/generations":
                    body = ('[{"generation": 0, "sha256": "%s", "model_url": "/models/0/model.onnx"}]'
                            % server.sha256).encode()
                elif self.path == "/models/0/model.onnx":
                    server.requests += 1
                    body = server.data
                else:
                    self.send_error(404, "no such generation")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if server.announce and self.path.endswith(".onnx"):
                    self.send_header("X-SHA256", "0" * 64 if server.lie else server.sha256)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client had it cached and hung up after the headers

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        if self.thread is not None:  # shutdown() waits for serve_forever: only once
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread = None


@pytest.fixture
def data():
    return open(tiny_onnx(), "rb").read()


@pytest.fixture
def server(data):
    running = ModelServer(data)
    yield running
    running.close()


def test_download_once_verified_and_cached(server, data, tmp_path):
    url = server.url + "/models/0/model.onnx"
    path = resolve_model(url, cache_dir=str(tmp_path))
    assert open(path, "rb").read() == data and os.path.basename(path) == server.sha256 + ".onnx"
    stored = os.stat(path)
    assert resolve_model(url, cache_dir=str(tmp_path)) == path  # header names a cached file: body not taken
    assert server.requests == 2 and os.stat(path).st_mtime == stored.st_mtime
    with_fragment = url + "#sha256=" + server.sha256
    server.close()  # with the digest known, no request at all
    assert resolve_model(with_fragment, cache_dir=str(tmp_path)) == path
    assert resolve_model(url, cache_dir=str(tmp_path), expected_sha256=server.sha256.upper()) == path
    assert server.requests == 2 and os.stat(path).st_ino == stored.st_ino
    assert [n for n in os.listdir(str(tmp_path / "models")) if n.endswith(".partial")] == []


def test_sha256_mismatch_keeps_nothing(server, tmp_path):
    url = server.url + "/models/0/model.onnx#sha256=" + "1" * 64
    with pytest.raises(DeviceError, match="expected"):
        resolve_model(url, cache_dir=str(tmp_path))
    assert not (tmp_path / "models").exists() or os.listdir(str(tmp_path / "models")) == []


def test_lying_server_header_is_caught(data, tmp_path):
    liar = ModelServer(data, lie=True)
    try:
        with pytest.raises(DeviceError, match="corrupted or the host changed it"):
            resolve_model(liar.url + "/models/0/model.onnx", cache_dir=str(tmp_path))
        assert os.listdir(str(tmp_path / "models")) == []
    finally:
        liar.close()


def test_no_header_no_digest_still_downloads(data, tmp_path):
    quiet = ModelServer(data, announce=False)
    try:
        messages = []
        path = resolve_model(quiet.url + "/models/0/model.onnx", cache_dir=str(tmp_path), log=messages.append)
        assert open(path, "rb").read() == data and "no sha256" in messages[0]
    finally:
        quiet.close()


def test_http_404_and_unreachable(server, tmp_path):
    with pytest.raises(DeviceError, match="HTTP 404"):
        resolve_model(server.url + "/models/99/model.onnx", cache_dir=str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceError, match="unreachable"):
        resolve_model("http://127.0.0.1:{}/models/0/model.onnx".format(port), cache_dir=str(tmp_path), timeout=2)


def test_local_paths(tmp_path, server):
    assert resolve_model(tiny_onnx()) == tiny_onnx()
    assert resolve_model(tiny_onnx(), expected_sha256=server.sha256) == tiny_onnx()
    with pytest.raises(DeviceError, match="has sha256"):
        resolve_model(tiny_onnx(), expected_sha256="2" * 64)
    with pytest.raises(DeviceError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(DeviceError, match="not a sha256"):
        resolve_model(tiny_onnx(), expected_sha256="xyz")


def test_generations_listing_gives_ready_urls(server, tmp_path):
    generations = list_generations(server.url)
    assert generations[0]["model_url"] == server.url + "/models/0/model.onnx#sha256=" + server.sha256
    assert split_url(generations[0]["model_url"])[1] == server.sha256
    assert resolve_model(generations[0]["model_url"], cache_dir=str(tmp_path)).endswith(server.sha256 + ".onnx")


@pytest.mark.parametrize("body", [b"<html>a captive portal</html>", b"", b"\x08\x07" * 10])
def test_a_url_that_is_not_a_model_is_not_cached(tmp_path, body):
    """No sha256 from the caller: the download is parsed as ONNX before it goes into the cache."""
    for announce in (False, True):  # the server's own X-SHA256 vouches for nothing
        page = ModelServer(body, announce=announce)
        try:
            with pytest.raises(DeviceError, match="did not give a model the device can run"):
                resolve_model(page.url + "/models/0/model.onnx", cache_dir=str(tmp_path))
        finally:
            page.close()
        folder = tmp_path / "models"
        assert not folder.exists() or os.listdir(str(folder)) == []
