"""The live demo over real HTTP: the page, /stats, /metrics, the MJPEG stream and a single frame."""
import json
import re
import urllib.request

import cv2
import numpy as np
import pytest

from device.web import BOUNDARY, FrameHub, LiveServer
from tests.device.test_serve import RunningServe, tiny_model  # noqa: F401  (the fixture)


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers, response.read()


def mjpeg_frames(url, count):
    """Read ``count`` JPEG parts of an MJPEG stream; return the decoded images."""
    images = []
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=" + BOUNDARY
        body = response.read()  # ?frames=N ends the stream after N parts
    for part in body.split(("--" + BOUNDARY + "\r\n").encode())[1:]:
        headers, _, rest = part.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", headers).group(1))
        images.append(cv2.imdecode(np.frombuffer(rest[:length], np.uint8), cv2.IMREAD_COLOR))
    assert len(images) == count
    return images


def test_live_server_streams_published_frames():
    hub = FrameHub()
    server = LiveServer("127.0.0.1", 0, lambda: {"frames": 1}, hub).start()
    try:
        frame = np.zeros((40, 60, 3), np.uint8)
        frame[:, :30] = 255
        hub.publish(frame)
        status, headers, body = fetch(server.url + "frame.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (40, 60, 3) and decoded[:, :25].mean() > 200 and decoded[:, 35:].mean() < 50
        assert json.loads(fetch(server.url + "stats")[2]) == {"frames": 1}
        with pytest.raises(urllib.error.HTTPError) as missing:
            fetch(server.url + "nothing")
        assert missing.value.code == 404
    finally:
        server.close()


def test_device_serve_page_stats_metrics_and_stream(tiny_model):  # noqa: F811
    run, card = tiny_model
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--http",
                         "127.0.0.1:0", "--duration", "60", "--warmup", "0", "--headless")
    try:
        url = re.search(r"(http://\S+/)", serve.wait_for("live page at")).group(1)
        status, headers, page = fetch(url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        for element in (b'src="stream.mjpg"', b'id="top5"', b"FPS end-to-end", b"FPS network-only", b'id="stages"',
                        b'id="rss"', b'id="gpu-mem"'):
            assert element in page
        images = mjpeg_frames(url + "stream.mjpg?frames=3", 3)
        assert images[0].shape == (480, 640, 3)
        # the overlay is drawn while someone watches: the top-left corner holds the black label box, white text
        corner = images[-1][5:25, 5:60]
        assert (corner.max(axis=2) < 40).mean() > 0.4 and (corner.min(axis=2) > 180).mean() > 0.02
        stats = json.loads(fetch(url + "stats")[2])
        assert stats["frames"] > 0 and stats["model_sha256"] == card["sha256"] and stats["network_fps"] > 0
        assert stats["top"][0][0] in ("cat", "dog", "fox") and stats["stages_ms"]["overlay"]["p50"] is not None
        metrics = fetch(url + "metrics")[2].decode()
        assert re.search(r"^squishednets_frames_total \d+", metrics, re.M)
        assert re.search(r'^squishednets_stage_latency_seconds_bucket\{le="\+Inf",stage="infer"\} [1-9]', metrics, re.M)
        assert fetch(url + "health")[2] == b"ok\n"
    finally:
        code = serve.stop()
    assert code == 0  # Ctrl-C ends the run cleanly, with the final figures
    serve.wait_for("done:")


def test_many_viewers_and_50_concurrent_stats_while_the_loop_runs(tiny_model):  # noqa: F811
    """MJPEG viewers hold their connection for good; 50 /stats at once must all be answered without a single
    TCP retransmission (a listen backlog of 5 drops the SYNs of a burst: the clients retry after 1 s, 3 s...;
    counted from the kernel's TCP_INFO, so the check does not depend on how busy this machine is), and the
    loop keeps classifying meanwhile."""
    import socket
    import struct
    import threading
    import time
    run, card = tiny_model
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--loop", "--http",
                         "127.0.0.1:0", "--duration", "120", "--warmup", "0", "--headless", "--status-every", "0")
    viewers = []
    try:
        url = re.search(r"(http://\S+/)", serve.wait_for("live page at")).group(1)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for _ in range(10):  # long-lived MJPEG viewers, reading slowly
            viewer = socket.create_connection(("127.0.0.1", port), timeout=10)
            viewer.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
            viewers.append(viewer)
        frames_before, deadline = 0, time.monotonic() + 60
        while frames_before == 0 and time.monotonic() < deadline:  # the loop has started
            time.sleep(0.1)
            frames_before = json.loads(fetch(url + "stats")[2])["frames"]
        barrier = threading.Barrier(50)
        answers, failures = [], []

        def one():
            barrier.wait()
            began = time.monotonic()
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=30)
                client.sendall(b"GET /stats HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                info = struct.unpack_from("8B24I", client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))
                client.close()
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.0 200") and json.loads(body)["frames"] >= frames_before
                answers.append((time.monotonic() - began, info[8 + 23]))  # seconds, tcpi_total_retrans
            except Exception as error:  # counted, then asserted below
                failures.append(repr(error))
        clients = [threading.Thread(target=one) for _ in range(50)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=60)
        frames_after, deadline = frames_before, time.monotonic() + 120  # the loop kept classifying: an event
        while frames_after <= frames_before and time.monotonic() < deadline:
            time.sleep(0.05)
            frames_after = json.loads(fetch(url + "stats")[2])["frames"]
    finally:
        for viewer in viewers:
            viewer.close()
        code = serve.stop()
    retransmitted = sum(1 for _, retransmits in answers if retransmits)
    print("50 concurrent /stats beside 10 MJPEG viewers: {} answered, {} retransmitted, slowest {:.3f} s, "
          "frames {} -> {}".format(len(answers), retransmitted, max([a[0] for a in answers] or [0]), frames_before,
                                   frames_after))
    assert failures == [] and len(answers) == 50
    assert retransmitted == 0  # with a backlog of 5: 39-43 of 50 connections retransmitted here
    assert frames_after > frames_before and code == 0
