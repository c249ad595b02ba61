"""The long-running process keeps its own resources (issue 31, kind 3): idle connections to the live page are timed
out and capped below the open-file limit, so the source's images and the telemetry's reads still find a file
descriptor; durations are monotonic, so a clock stepped back cannot keep the warm-up going. device-serve in a real
process under a real ``ulimit -n``, real sockets."""
import json
import re
import resource
import socket
import subprocess
import sys
import time

import cv2
import numpy as np

from device.web import connection_cap
from tests.engines.tiny_onnx import tiny_onnx


def test_the_connection_cap_stays_below_the_open_file_limit():
    assert connection_cap(256) == 104 and connection_cap(1024) == 200 and connection_cap(60) == 6
    assert connection_cap(10) == 4


def test_idle_connections_do_not_starve_the_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), np.full((32, 32, 3), 8 * i, np.uint8))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    process = subprocess.Popen([sys.executable, "-m", "device.serve", "--model", tiny_onnx(), str(folder), "--loop",
                                "--frames", "3000", "--http", "127.0.0.1:0", "--headless", "--status-every", "0",
                                "--warmup", "0", "--backend", "onnxruntime", "--stats-json",
                                str(tmp_path / "stats.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    idle = []
    try:
        port = None
        for line in process.stdout:
            found = re.search(r"live page at http://[^:]+:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "no live page"
        for _ in range(300):  # more idle connections than the process has file descriptors
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        out, err = process.communicate(timeout=240)
    finally:
        for sock in idle:
            sock.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    assert "Too many open files" not in out + err and "Traceback" not in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 3000


def test_an_idle_connection_is_closed_after_the_timeout():
    from device.web import CONNECTION_TIMEOUT_S, FrameHub, LiveServer
    server = LiveServer("127.0.0.1", 0, lambda: {}, FrameHub()).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=CONNECTION_TIMEOUT_S + 10)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, nothing sent
        assert CONNECTION_TIMEOUT_S - 1 < time.monotonic() - started < CONNECTION_TIMEOUT_S + 5
        sock.close()
    finally:
        server.close()


def test_the_warm_up_ends_whatever_the_wall_clock_does(monkeypatch):
    from device.backends import open_backend
    import device.backends.base as base
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=1, log=None) as backend:
        monkeypatch.setattr(base.time, "time", lambda: 1000.0)  # a clock stuck (or stepped back) by NTP
        assert backend.warmup(0.2) >= 1
