"""host-serve on loopback: models out (with their sha256), reports in (token, size and schema checked),
stored once in the run's lineage.sqlite; and the device's spool delivering to a host started late."""
import hashlib
import socket
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from device.reports import Reporter, ReportSpool  # noqa: E402
from host.run.lineage import Lineage  # noqa: E402
from host.serve.app import create_app  # noqa: E402
from host.serve.server import BackgroundServer, main

from tests.tiny_run import LABELS  # noqa: E402,F401
from tests.tiny_run import make_tiny_run as tiny_run_folder  # noqa: E402
from tests.tiny_run import serving  # noqa: E402

TOKEN = "test-token-0123456789abcdef"


def make_tiny_run(run: Path) -> dict:
    """One generation of the tests' tiny run (tests/tiny_run.py); its card."""
    return tiny_run_folder(run)[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    card = make_tiny_run(run)
    return run, card


@pytest.fixture()
def host(tiny_run):
    run, card = tiny_run
    with serving(run, TOKEN) as server:
        yield server, run, card


def report(card, sequence, kind="periodic", device_id="jetson-1", fps=42.0):
    return {"schema": 1, "device_id": device_id, "sequence": sequence, "kind": kind, "created_at": 1.0,
            "model_sha256": card["sha256"], "backend": "onnxruntime", "precision": "fp32",
            "platform": {"hostname": "x"}, "stats": {"frames": 10, "fps": fps, "latency_ms": {"p50": 1.0},
                                                     "dropped": 0, "rss_mb": 50.0, "gpu_mem_mb": None}}


def stored(run, device_id):
    lineage = Lineage(run / "lineage.sqlite")
    try:
        return [r for r in lineage.device_reports() if r["device_id"] == device_id]
    finally:
        lineage.close()


def test_health_generations_and_models(host):
    server, run, card = host
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/health").json()["generations"] == 1
        generations = client.get("/generations").json()
        assert generations[0]["sha256"] == card["sha256"] and generations[0]["model_url"] == "/models/0/model.onnx"
        response = client.get("/models/0/model.onnx")
        assert response.status_code == 200
        assert response.headers["x-sha256"] == card["sha256"] == hashlib.sha256(response.content).hexdigest()
        assert client.get("/models/0/labels.txt").text.split() == LABELS
        assert client.get("/models/0/card.json").json()["sha256"] == card["sha256"]
        assert client.get("/models/7/model.onnx").status_code == 404
        assert client.get("/models/0/weights.pt").status_code == 404


def test_reports_are_authenticated_validated_size_limited_and_stored_once(host):
    server, run, card = host
    good = report(card, 1, device_id="dev-auth")
    auth = {"Authorization": "Bearer " + TOKEN}
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/reports", json=good).status_code == 401
        assert client.post("/reports", json=good, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/reports", content=b"{not json", headers=auth).status_code == 400
        bad = dict(good, sequence=-3)
        assert client.post("/reports", json=bad, headers=auth).status_code == 422
        missing = {k: v for k, v in good.items() if k != "stats"}
        assert client.post("/reports", json=missing, headers=auth).status_code == 422
        big = dict(good, padding="x" * 70000)
        assert client.post("/reports", json=big, headers=auth).status_code == 413
        assert stored(run, "dev-auth") == []
        first = client.post("/reports", json=good, headers=auth)
        assert first.status_code == 201 and first.json() == {"stored": True, "duplicate": False, "generation": 0}
        again = client.post("/reports", json=good, headers=auth)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        final = report(card, 2, kind="final", device_id="dev-auth", fps=123.5)
        assert client.post("/reports", json=final, headers=auth).status_code == 201
        assert client.get("/reports").status_code == 401  # the reports name devices: behind the token
        listed = [r for r in client.get("/reports", headers=auth).json() if r["device_id"] == "dev-auth"]
        assert [r["sequence"] for r in listed] == [1, 2]
        assert client.get("/reports", params={"generation": 0}, headers=auth).status_code == 200
        listed = client.get("/generations").json()[0]
        assert listed["device_fps"] is None  # a live figure is not the benchmark device_fps names
        assert [(f["device_id"], f["measurement"], f["fps"]) for f in listed["device_figures"]] == [
            ("dev-auth", "live", 123.5)]
    rows = stored(run, "dev-auth")
    assert len(rows) == 2 and rows[0]["generation"] == 0 and rows[0]["fps"] is None and rows[1]["fps"] == 123.5


def test_spooled_reports_reach_a_host_started_later_exactly_once(tiny_run, tmp_path):
    run, card = tiny_run
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spool = ReportSpool(str(tmp_path / "spool"), device_id="dev-late")
    base = report(card, 0)
    body = {k: base[k] for k in ("model_sha256", "backend", "precision", "platform", "stats")}
    reporter = Reporter("http://127.0.0.1:{}".format(port), spool, lambda: body, token=TOKEN, log=lambda m: None,
                        timeout_s=1)
    for _ in range(4):
        spool.add("periodic", body)
    assert reporter.flush() is False  # the host is not up yet: everything waits on disk
    resend = open(spool.pending()[0]).read()
    server = BackgroundServer(create_app(run, TOKEN), port=port).start()
    try:
        assert reporter.close(body) is True
        # the answer to a delivery was lost and the device sends it again: still stored once
        response = httpx.post(server.url + "/reports", content=resend,
                              headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        assert response.json()["duplicate"] is True
    finally:
        server.stop()
    rows = stored(run, "dev-late")
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["kind"] for r in rows] == ["periodic"] * 4 + ["final"]


def test_token_file_and_bad_run(tmp_path, tiny_run, capsys):
    assert main(["--run", str(tmp_path / "nowhere")]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    short = tmp_path / "short.token"
    short.write_text("abc\n")
    short.chmod(0o600)
    assert main(["--run", str(tiny_run[0]), "--token-file", str(short)]) == 2
    assert "at least 16" in capsys.readouterr().err
