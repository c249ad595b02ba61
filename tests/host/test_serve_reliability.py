"""host-serve, issue 18: nothing served from outside the run, nothing private in an answer, every stored report
servable, reads that never wait for a writer, paging, slow and idle clients, a read-only run, a clean stop.
A real server on loopback (or the real command in its own process) over a real run folder. No fixed waits:
each test waits for an event (an answer, a closed socket, a line in a log) with a deadline that is only a
bound."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from host.serve.guard import BoundedLog, ConnectionGuard  # noqa: E402
from host.run.lineage import Lineage  # noqa: E402
from host.serve.app import create_app  # noqa: E402
from host.serve.server import BackgroundServer
from tests.host.test_serve import TOKEN, make_tiny_run, report  # noqa: E402
from tests.tiny_run import serving  # noqa: E402

AUTH = {"Authorization": "Bearer " + TOKEN}
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    card = make_tiny_run(run)
    return run, card


@pytest.fixture()
def served(run_folder):
    run, card = run_folder
    with serving(run, TOKEN) as server:
        yield server, run, card


# -- nothing from outside the run, nothing private in an answer ---------------------------------------
def test_symlinked_labels_and_card_are_not_followed_out_of_the_run(run_folder, tmp_path):
    run, card = run_folder
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE-THE-RUN\n")
    for name in ("labels.txt", "card.json"):
        (run / "gen-00" / name).unlink()
        (run / "gen-00" / name).symlink_to(secret)
    server = BackgroundServer(create_app(run, TOKEN)).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            for name in ("labels.txt", "card.json"):
                answer = client.get(f"/models/0/{name}")
                assert answer.status_code == 404 and "SECRET" not in answer.text
            assert client.get("/models/0/model.onnx").status_code == 200
    finally:
        server.stop()


def test_a_changed_model_is_a_503_naming_the_generation_and_the_path_stays_in_the_log(served, capfd):
    server, run, card = served
    onnx = run / "gen-00" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"x")
    with httpx.Client(base_url=server.url) as client:
        answers = [client.get("/models/0/model.onnx") for _ in range(3)]
    assert {a.status_code for a in answers} == {503}
    assert "generation 0" in answers[0].json()["detail"]
    assert all(str(run) not in a.text for a in answers)
    err = capfd.readouterr().err
    assert err.count(str(onnx)) == 1  # said once in host-serve's own log


# -- every stored report servable; pages; reads without the writer's lock -----------------------------
def test_a_lone_surrogate_is_refused_and_one_stored_before_is_still_served(served):
    server, run, card = served
    body = json.dumps(report(card, 1, device_id="dev-utf")).replace('"hostname": "x"', '"hostname": "\\ud800"')
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        answer = client.post("/reports", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422 and "surrogate" in answer.json()["detail"]
        lineage = Lineage(run / "lineage.sqlite")  # as an earlier host-serve stored it: the escape kept
        try:
            lineage.add_device_report("dev-utf", 1, card["sha256"], "periodic", None, json.loads(body))
        finally:
            lineage.close()
        listed = client.get("/reports")
    assert listed.status_code == 200
    (row,) = [r for r in listed.json() if r["device_id"] == "dev-utf"]
    assert row["body"]["platform"]["hostname"] == "\ud800"


def test_reports_come_in_pages_that_link_to_the_next(served):
    server, run, card = served
    lineage = Lineage(run / "lineage.sqlite")
    try:
        for sequence in range(1, 26):
            lineage.add_device_report("dev-page", sequence, card["sha256"], "periodic", None,
                                      report(card, sequence, device_id="dev-page"))
    finally:
        lineage.close()
    seen, url, pages = [], "/reports?limit=10", 0
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        assert len(client.get("/reports").json()) == 25  # under the default page size: one answer
        while url:
            answer = client.get(url)
            assert answer.status_code == 200
            seen += [r["sequence"] for r in answer.json()]
            pages += 1
            link = answer.headers.get("link")
            url = link[1:link.index(">")] if link else None
        assert client.get("/reports?limit=0").status_code == 422
        assert client.get("/reports?limit=100000").status_code == 422
    assert seen == list(range(1, 26)) and pages == 3


def test_reads_are_answered_while_another_process_holds_the_write_lock(served, capfd):
    server, run, card = served
    blocker = sqlite3.connect(str(run / "lineage.sqlite"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # a sqlite3 shell left in a write transaction
    posted = {}

    def post():
        posted["answer"] = httpx.post(server.url + "/reports", json=report(card, 1, device_id="dev-lock"),
                                      headers=AUTH, timeout=120)
    writer = threading.Thread(target=post)
    try:
        writer.start()
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as client:
            for path in ("/health", "/generations", "/reports", "/models/0/model.onnx"):
                assert client.get(path).status_code == 200
        assert writer.is_alive() and "answer" not in posted  # the reads did not wait for the writer
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        writer.join()
    # the write waited for the lock (201), or gave up after SQLite's busy timeout: a 503 naming the lock
    assert posted["answer"].status_code in (201, 503)
    if posted["answer"].status_code == 503:
        assert "write lock" in capfd.readouterr().err


# -- slow and idle clients --------------------------------------------------------------------------
def half_sent(url):
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    return sock


def closed_by_server(sock):
    """Read until the server closes the connection (bounded by the socket's timeout); what it sent."""
    received = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:  # closed with our unread request in its buffer: a reset
            return received
        if not chunk:
            return received
        received += chunk


def test_a_request_whose_headers_never_end_is_closed_with_a_408(run_folder):
    run, card = run_folder
    server = BackgroundServer(create_app(run, TOKEN), guard=ConnectionGuard(header_timeout_s=0.2)).start()
    try:
        sock = half_sent(server.url)
        try:
            assert closed_by_server(sock).startswith(b"HTTP/1.1 408")
        finally:
            sock.close()
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_at_the_connection_limit_idle_connections_make_room_for_whole_requests(run_folder):
    run, card = run_folder
    guard = ConnectionGuard(max_connections=8, header_timeout_s=600)
    server = BackgroundServer(create_app(run, TOKEN), guard=guard).start()
    idle = []
    try:
        idle = [half_sent(server.url) for _ in range(20)]
        for _ in range(3):
            assert httpx.get(server.url + "/health", timeout=60).status_code == 200
        assert closed_by_server(idle[0]) == b""  # the oldest idle ones were closed to make room
        assert guard.evicted >= 12
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_a_bounded_log_lets_a_repeated_message_through_a_few_times_a_minute():
    import logging
    now = [0.0]
    bounded = BoundedLog(burst=3, window_s=60, clock=lambda: now[0])
    logger = logging.getLogger("test-bounded-log")
    logger.propagate = False
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    logger.addFilter(bounded)
    for _ in range(10000):
        logger.warning("Invalid HTTP request received.")
    logger.warning("another message")
    assert len(lines) == 4
    now[0] = 61.0
    logger.warning("Invalid HTTP request received.")
    assert len(lines) == 5 and "9997 more like it" in lines[-1]


# -- the command: a read-only run, a clean stop, a client gone mid-body -----------------------------------
def start_host_serve(run, token_file, *extra):
    """host-serve's real command in its own process; returns it once it has said where it listens."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; from host.serve.server import main; sys.exit(main())",
                                "--run", str(run), "--bind", "127.0.0.1:0", "--token-file", str(token_file),
                                *extra], cwd=str(PROJECT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True)
    line = process.stdout.readline()  # "host-serve: serving RUN on http://127.0.0.1:PORT (...)"
    assert "serving" in line, line + process.stderr.read()
    process.first_line = line
    return process, line.split("http://")[1].split()[0]


def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_is_a_clean_exit_and_a_client_gone_mid_body_leaves_no_traceback(run_folder, tmp_path, stop):
    run, card = run_folder
    process, address = start_host_serve(run, token_file(tmp_path))
    try:
        host, port = address.split(":")
        for _ in range(3):  # a device that loses its connection in the middle of a POST
            sock = socket.create_connection((host, int(port)), timeout=60)
            sock.sendall(b"POST /reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                         b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"schema\": 1")
            sock.close()
        assert httpx.get(f"http://{address}/health", timeout=60).status_code == 200
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in out + err and "ClientDisconnect" not in err
    assert err.strip().splitlines()[-1] == "host-serve: stopped"


def read_only_mount(source, target):
    """``source`` seen read-only at ``target``: a bind mount as root, else the folder's write bits removed."""
    if os.geteuid() == 0:
        target.mkdir()
        subprocess.check_call(["mount", "--bind", str(source), str(target)])
        subprocess.check_call(["mount", "-o", "remount,ro,bind", str(target)])
        return lambda: subprocess.call(["umount", str(target)])
    source.chmod(0o555)
    (source / "lineage.sqlite").chmod(0o444)
    os.symlink(str(source), str(target))
    return lambda: source.chmod(0o755)


def test_a_read_only_run_is_served_read_only_not_called_broken(run_folder, tmp_path):
    run, card = run_folder
    target = tmp_path / "ro"
    try:
        undo = read_only_mount(run, target)
    except (subprocess.CalledProcessError, OSError) as error:
        pytest.skip(f"no read-only mount here ({error})")
    try:
        process, address = start_host_serve(target, token_file(tmp_path))
        try:
            with httpx.Client(base_url=f"http://{address}", headers=AUTH, timeout=60) as client:
                assert client.get("/generations").json()[0]["sha256"] == card["sha256"]
                assert client.get("/models/0/model.onnx").status_code == 200
                assert client.get("/reports").status_code == 200
                refused = client.post("/reports", json=report(card, 1, device_id="dev-ro"))
                assert refused.status_code == 503 and "read-only" in refused.json()["detail"]
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=120)
        assert "read-only" in process.first_line and process.returncode == 0 and "Traceback" not in err
    finally:
        undo()


def test_a_body_that_drips_is_refused_with_a_408_and_its_connection_closed(run_folder):
    run, card = run_folder
    server = BackgroundServer(create_app(run, TOKEN, body_timeout_s=0.3)).start()  # default 30 s
    try:
        host_name, port = server.url.split("//")[1].split(":")
        sock = socket.create_connection((host_name, int(port)), timeout=120)  # a bound, not a speed
        sock.sendall(b"POST /reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        try:
            answer = closed_by_server(sock)  # the body never ends: the server answers and closes
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
    finally:
        server.stop()


def test_host_serve_starts_without_torch():
    """host-serve serves files and a database: importing it must not load torch (3 s and 300 MB at every start;
    under load the filed examples' 10 s start-up wait ran out). A dependency, checked as one, not a time."""
    done = subprocess.run([sys.executable, "-c", "import sys, host.serve.server; "
                           "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules))"],
                          cwd=str(PROJECT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_public_listing_reads_the_stored_reports_once_per_new_report_not_once_per_request(served,
                                                                                             monkeypatch):
    """GET /generations (public) summarises every stored report's figure; re-reading them for every request let
    anyone spend 0.7 s of host-serve's CPU per request at 20,000 reports. Counted on Lineage.device_figures."""
    server, run, card = served
    calls = []
    real = Lineage.device_figures
    monkeypatch.setattr(Lineage, "device_figures", lambda self: calls.append(1) or real(self))
    with httpx.Client(base_url=server.url) as client:
        for _ in range(5):
            assert client.get("/generations").status_code == 200
        assert client.get("/").status_code == 200
        read_once = len(calls)
        final = report(card, 1, kind="final", device_id="dev-figures", fps=77.0)
        assert client.post("/reports", json=final, headers=AUTH).status_code == 201
        listed = client.get("/generations").json()
    assert read_once <= 2  # device_fps reads them too, inside the same refresh
    assert len(calls) > read_once and listed[0]["device_fps"] in (77.0, None) and any(
        f["device_id"] == "dev-figures" for f in listed[0]["device_figures"])
