"""Delivery identity: a report is (device_id, spool_id, sequence), so a device id used again with a fresh
spool, or a spool whose counter was damaged, never has its reports taken for old ones ("200 duplicate" and
deleted: silent loss); a resend of the same body is a duplicate; a different body under a stored identity
is a conflict, kept beside it and said. A real host-serve on loopback, real spools, a real lineage.sqlite."""
import json
import sqlite3

import pytest

httpx = pytest.importorskip("httpx")

from device.reports import Reporter, ReportSpool  # noqa: E402
from host.run.lineage import Lineage  # noqa: E402

from tests.tiny_run import served_tiny_run  # noqa: E402

TOKEN = "identity-token-0123456789abcdef"


@pytest.fixture()
def host(tmp_path):
    with served_tiny_run(tmp_path / "run", TOKEN) as served:
        yield served


def body_of(card, fps=10.0):
    return {"model_sha256": card["sha256"], "backend": "onnxruntime", "precision": "fp32", "platform": {},
            "stats": {"frames": 1, "fps": fps}}


def rows(run, device_id):
    lineage = Lineage(run / "lineage.sqlite")
    try:
        return [r for r in lineage.device_reports() if r["device_id"] == device_id]
    finally:
        lineage.close()


def deliver(server, spool, logged):
    reporter = Reporter(server.url, spool, dict, token=TOKEN, log=logged.append)
    assert reporter.flush() is True
    return reporter


def test_one_device_id_in_two_spool_folders_loses_nothing(host, tmp_path):
    server, run, card = host
    logged = []
    for folder in ("board-a", "board-b"):  # a reflashed board, a new container: the same --device-id
        spool = ReportSpool(str(tmp_path / folder), device_id="lab-tx1", log=logged.append)
        for fps in (1.0, 2.0, 3.0):
            spool.add("periodic", body_of(card, fps))
        deliver(server, spool, logged)
        assert spool.pending() == []
    stored = rows(run, "lab-tx1")
    assert len(stored) == 6  # before: 3 (the second board's 1, 2, 3 answered "duplicate" and deleted)
    assert sorted(r["sequence"] for r in stored) == [1, 1, 2, 2, 3, 3]
    assert len({r["spool_id"] for r in stored}) == 2 and all(r["conflict"] == 0 for r in stored)


def test_a_spool_whose_counter_was_damaged_starts_a_series_the_host_keeps(host, tmp_path):
    server, run, card = host
    logged = []
    spool = ReportSpool(str(tmp_path / "spool"), device_id="sd-card", log=logged.append)
    spool.add("periodic", body_of(card, 1.0))
    deliver(server, spool, logged)
    (tmp_path / "spool" / "sequence").write_bytes(b"\x00garbage")
    spool.add("periodic", body_of(card, 2.0))
    spool.add("final", body_of(card, 3.0))
    deliver(server, spool, logged)
    stored = rows(run, "sd-card")
    assert [r["body"]["stats"]["fps"] for r in stored] == [1.0, 2.0, 3.0]
    assert any("new spool id" in line for line in logged)


def test_a_resend_is_a_duplicate_and_a_different_body_is_a_conflict_kept_and_said(host, capfd):
    server, run, card = host
    auth = {"Authorization": "Bearer " + TOKEN}
    old_device = dict(body_of(card), schema=1, device_id="old-dev", sequence=7, kind="periodic", created_at=1.0)
    with httpx.Client(base_url=server.url, headers=auth) as client:
        assert client.post("/reports", json=old_device).status_code == 201
        again = client.post("/reports", json=old_device)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        other = dict(old_device, created_at=2.0)  # an older device without spool ids, reflashed: same numbers
        answer = client.post("/reports", json=other)
        assert answer.status_code == 409 and answer.json()["stored"] is True and answer.json()["conflict"] is True
        assert client.post("/reports", json=other).status_code == 200  # its own resend: a duplicate
        listed = [r for r in client.get("/reports").json() if r["device_id"] == "old-dev"]
    assert [(r["sequence"], r["conflict"], r["body"]["created_at"]) for r in listed] == [(7, 0, 1.0), (7, 1, 2.0)]
    err = capfd.readouterr().err
    assert "differs from the one stored" in err and "Traceback" not in err


def test_a_run_from_before_spool_ids_keeps_its_reports_and_takes_new_ones(tmp_path):
    path = tmp_path / "lineage.sqlite"
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE device_reports (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, "
               "sequence INTEGER NOT NULL, model_sha256 TEXT NOT NULL, generation INTEGER, kind TEXT NOT NULL, "
               "fps REAL, body TEXT NOT NULL, received_at REAL NOT NULL, UNIQUE (device_id, sequence))")
    db.execute("INSERT INTO device_reports (device_id, sequence, model_sha256, generation, kind, fps, body, "
               "received_at) VALUES ('tx1', 1, ?, NULL, 'final', 5.0, ?, 1.0)", ("ab" * 32, json.dumps({"a": 1})))
    db.commit()
    db.close()
    lineage = Lineage(path)
    try:
        assert lineage.add_device_report("tx1", 1, "ab" * 32, "final", 6.0, {"a": 2}, spool_id="0123456789abcdef") \
            == "stored"  # the old UNIQUE (device_id, sequence) would have refused it
        assert lineage.add_device_report("tx1", 1, "ab" * 32, "final", 5.0, {"a": 1}) == "duplicate"
        listed = lineage.device_reports()
    finally:
        lineage.close()
    assert [(r["spool_id"], r["body"]) for r in listed] == [("", {"a": 1}), ("0123456789abcdef", {"a": 2})]
