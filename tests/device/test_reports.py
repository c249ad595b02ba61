"""The report spool and its delivery, against a real HTTP server on loopback."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from contract.errors import DeviceError
from device.reports import Reporter, ReportSpool, reports_url
from tests.device import loopback


class Recorder(object):
    """A loopback HTTP server that records POSTed reports and answers with ``status`` and, by default, what
    host-serve answers a stored report (the device counts a report delivered only on that answer)."""

    def __init__(self, status=201, answer=b'{"stored": true, "duplicate": false, "generation": null}'):
        self.status = status
        self.answer = answer
        self.received = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.received.append((self.headers.get("Authorization"), json.loads(body)))
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(recorder.answer)))
                self.end_headers()
                self.wfile.write(recorder.answer)

        self.server, self.url = loopback.start(Handler)

    def close(self):
        loopback.stop(self.server)


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sequence_and_device_id_survive_a_restart(tmp_path):
    spool = ReportSpool(str(tmp_path))
    first = spool.add("periodic", {"stats": {}})
    again = ReportSpool(str(tmp_path))
    second = again.add("final", {"stats": {}})
    assert second["sequence"] == first["sequence"] + 1
    assert again.device_id == spool.device_id
    assert [os.path.basename(p) for p in again.pending()] == ["report-000000000001.json", "report-000000000002.json"]


def test_spool_is_bounded_says_so_and_keeps_final_reports(tmp_path):
    logged = []
    spool = ReportSpool(str(tmp_path), limit=3, log=logged.append)
    spool.add("final", {})
    for _ in range(4):
        spool.add("periodic", {})
    kinds = [json.load(open(p))["kind"] for p in spool.pending()]
    assert len(kinds) == 3 and kinds[0] == "final"
    assert spool.evicted == 2 and len(spool.pending()) == spool.limit
    assert len(logged) == 1 and "is full" in logged[0]


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(DeviceError, match="not an http"):
        reports_url("host:8700")
    assert reports_url("http://h:1/") == "http://h:1/reports"
    with pytest.raises(DeviceError, match="device id"):
        ReportSpool(str(tmp_path), device_id="bad id with spaces")
    with pytest.raises(DeviceError, match="kind"):
        ReportSpool(str(tmp_path)).add("weekly", {})


def test_reports_wait_while_the_host_is_down_then_arrive_in_order(tmp_path):
    spool = ReportSpool(str(tmp_path), device_id="dev-1")
    logged = []
    reporter = Reporter("http://127.0.0.1:{}".format(free_port()), spool, lambda: {}, token="t0ken",
                        log=logged.append, timeout_s=1)
    for _ in range(3):
        spool.add("periodic", {"stats": {"fps": 1.0}})
    assert reporter.flush() is False and len(spool.pending()) == 3
    assert "unreachable" in logged[0]
    assert reporter.flush() is False and reporter.status()["report_failed_attempts"] == 2
    assert len(logged) == 1  # the same failure is said once
    recorder = Recorder()
    try:
        reporter.url = recorder.url + "/reports"
        assert reporter.flush() is True
    finally:
        recorder.close()
    assert [r["sequence"] for _, r in recorder.received] == [1, 2, 3]
    assert recorder.received[0][0] == "Bearer t0ken"
    assert spool.pending() == [] and reporter.delivered == 3


def test_refused_reports_are_set_aside_but_auth_failures_wait(tmp_path):
    recorder = Recorder(status=422)
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev-1")
        reporter = Reporter(recorder.url, spool, lambda: {}, log=lambda m: None)
        spool.add("periodic", {})
        assert reporter.flush() is True
        assert spool.pending() == [] and os.listdir(str(tmp_path / "rejected")) == ["report-000000000001.json"]
        recorder.status = 401
        spool.add("periodic", {})
        assert reporter.flush() is False and len(spool.pending()) == 1
        assert "check --token" in reporter.last_error
    finally:
        recorder.close()


def test_periodic_and_final_reports_through_the_thread(tmp_path):
    recorder = Recorder()
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev-2")
        made = threading.Semaphore(0)

        def snapshot():
            made.release()
            return {"stats": {"fps": 3.0}}
        reporter = Reporter(recorder.url, spool, snapshot, interval_s=0.05, log=lambda m: None).start()
        for _ in range(3):  # three periodic reports made (an event, not a time: the machine may be busy)
            assert made.acquire(timeout=120)
        assert reporter.close({"stats": {"fps": 4.0}}) is True
    finally:
        recorder.close()
    kinds = [r["kind"] for _, r in recorder.received]
    sequences = [r["sequence"] for _, r in recorder.received]
    assert kinds[-1] == "final" and kinds.count("periodic") >= 2
    assert sequences == list(range(1, len(sequences) + 1))


RACER = r"""
import json, os, sys, time
from device.reports import ReportSpool
folder, go, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(sys.argv[4], "w").close()  # imported and about to poll: ready
while not os.path.exists(go):
    time.sleep(0.001)
failed, sequences, ids = 0, [], set()
for _ in range(count):
    try:
        spool = spool if sequences else ReportSpool(folder, limit=100000, log=lambda m: None)
        ids.add(spool.device_id)
        sequences.append(spool.add("periodic", {"stats": {"pid": os.getpid()}})["sequence"])
    except Exception as error:
        failed += 1
        print("failed: {!r}".format(error), file=sys.stderr)
print(json.dumps({"failed": failed, "sequences": sequences, "ids": sorted(ids)}))
"""


def race_two_writers(folder, count):
    """Two real processes start writing ``count`` reports each into one fresh spool folder at the same moment."""
    import subprocess
    import sys
    import time
    go = os.path.join(os.path.dirname(folder), "go")
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=project)
    ready = [os.path.join(os.path.dirname(folder), "ready-{}".format(n)) for n in range(2)]
    racers = [subprocess.Popen([sys.executable, "-c", RACER, folder, go, str(count), ready[n]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env)
              for n in range(2)]
    deadline = time.monotonic() + 300  # a bound, not a speed
    while not all(os.path.exists(path) for path in ready):  # both imported and polling: no fixed wait
        assert time.monotonic() < deadline and all(r.poll() is None for r in racers), "a racer did not start"
        time.sleep(0.001)
    open(go, "w").close()
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_sharing_a_spool_lose_nothing(tmp_path):
    folder = str(tmp_path / "spool")
    count = 250
    results = race_two_writers(folder, count)
    failed = sum(r["failed"] for r in results)
    written = [s for r in results for s in r["sequences"]]
    collided = len(written) - len(set(written))
    files = ReportSpool(folder, log=lambda m: None).pending()
    on_disk = sorted(json.load(open(p))["sequence"] for p in files)
    lost = len(written) - len(on_disk)  # a collision overwrote a report: one file for two writes
    print("two writers x {}: failed {}, collided {}, lost {}".format(count, failed, collided, lost))
    assert (failed, collided, lost) == (0, 0, 0)
    assert on_disk == list(range(1, 2 * count + 1))
    assert results[0]["ids"] == results[1]["ids"] and len(results[0]["ids"]) == 1  # one device id, made once
    # the race happened: each process's numbers are interleaved with the other's, not two blocks one after
    # the other (were they, the test would prove nothing about the lock)
    for result in results:
        numbers = result["sequences"]
        assert numbers[-1] - numbers[0] + 1 > len(numbers), "no interleaving: the two writers did not race"
    assert not [n for n in os.listdir(folder) if n.endswith(".partial")]


# -- nothing stops delivery: an unreadable file, a full disk, a conflict -----------------------------
def test_a_spool_file_that_is_not_utf8_json_is_set_aside_and_the_rest_delivered(tmp_path):
    recorder = Recorder()
    logged = []
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev-rot")
        spool.add("periodic", {"stats": {"fps": 1.0}})
        with open(os.path.join(str(tmp_path), "report-000000000002.json"), "wb") as handle:
            handle.write(b"\xff\xfe\x00\x01")  # bit rot: not UTF-8
        with open(os.path.join(str(tmp_path), "report-000000000003.json"), "wb") as handle:
            handle.write(b'{"cut short')  # UTF-8, not JSON
        spool.add("final", {"stats": {"fps": 2.0}})
        reporter = Reporter(recorder.url, spool, lambda: {}, log=logged.append)
        assert reporter.flush() is True
    finally:
        recorder.close()
    assert [r["sequence"] for _, r in recorder.received] == [1, 4]
    assert sorted(os.listdir(str(tmp_path / "rejected"))) == ["report-000000000002.json", "report-000000000003.json"]
    assert spool.pending() == [] and reporter.rejected == 2
    assert sum("not a UTF-8 JSON report" in line for line in logged) == 2


class FullDisk(ReportSpool):
    """A spool whose disk is full (ENOSPC, as the kernel says it) for the writes numbered in ``full``."""

    def __init__(self, folder, full, **kwargs):
        ReportSpool.__init__(self, folder, **kwargs)
        self.full = set(full)
        self.writes = 0

    def add(self, kind, body):
        import errno
        self.writes += 1
        if self.writes in self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return ReportSpool.add(self, kind, body)


def test_a_full_spool_disk_is_said_once_and_reporting_goes_on_when_room_is_back(tmp_path):
    recorder = Recorder()
    logged = []
    made = threading.Semaphore(0)

    def snapshot():
        made.release()
        return {"stats": {"fps": 1.0}}
    try:
        spool = FullDisk(str(tmp_path), full=[2, 3, 4], device_id="dev-full")
        reporter = Reporter(recorder.url, spool, snapshot, interval_s=0.01, log=logged.append).start()
        for _ in range(7):  # the 5th to 7th writes come after the disk had room again
            assert made.acquire(timeout=60)
        assert reporter._thread.is_alive()
        assert reporter.close({"stats": {"fps": 2.0}}) is True
    finally:
        recorder.close()
    kinds = [r["kind"] for _, r in recorder.received]
    assert kinds[-1] == "final" and kinds.count("periodic") >= 4
    assert reporter.unspooled == 3 and reporter.status()["reports_unspooled"] == 3
    full = [line for line in logged if "the disk is full" in line]
    assert len(full) == 1 and "free space" in full[0]
    assert any("written again" in line for line in logged)


def test_a_final_report_that_cannot_be_spooled_is_counted_not_raised(tmp_path):
    logged = []
    spool = FullDisk(str(tmp_path), full=[1], device_id="dev-full")
    reporter = Reporter("http://127.0.0.1:{}".format(free_port()), spool, lambda: {}, log=logged.append,
                        timeout_s=1)
    assert reporter.close({"stats": {"fps": 2.0}}, deadline_s=0) is True  # nothing waits; the final is lost, said
    assert reporter.unspooled == 1 and any("final report could not be written" in line for line in logged)


def test_a_conflict_the_host_kept_is_delivered_and_said_other_409s_wait(tmp_path):
    recorder = Recorder(status=409, answer=b'{"stored": true, "conflict": true}')
    logged = []
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev-twin")
        reporter = Reporter(recorder.url, spool, lambda: {}, log=logged.append)
        spool.add("periodic", {})
        assert reporter.flush() is True
        assert spool.pending() == [] and reporter.conflicts == 1 and reporter.delivered == 1
        assert not os.path.exists(str(tmp_path / "rejected"))
        assert any("as a conflict" in line and "--device-id" in line for line in logged)
        recorder.answer = b'{"detail": "no"}'  # a 409 that is not host-serve's: the address is wrong, not the report
        spool.add("periodic", {})
        assert reporter.flush() is False
        assert len(spool.pending()) == 1 and not os.path.exists(str(tmp_path / "rejected"))
        assert any("check --report-to" in line for line in logged)
    finally:
        recorder.close()


def test_each_spool_has_its_own_id_and_a_damaged_counter_starts_a_new_one(tmp_path):
    logged = []
    one = ReportSpool(str(tmp_path / "a"), device_id="same-name", log=logged.append)
    two = ReportSpool(str(tmp_path / "b"), device_id="same-name", log=logged.append)
    first, other = one.add("periodic", {}), two.add("periodic", {})
    assert (first["sequence"], other["sequence"]) == (1, 1)
    assert first["spool_id"] != other["spool_id"]  # the host can tell the two series apart
    assert ReportSpool(str(tmp_path / "a")).add("periodic", {})["spool_id"] == first["spool_id"]  # kept
    with open(str(tmp_path / "a" / "sequence"), "wb") as handle:
        handle.write(b"\xffgarbage")
    again = one.add("periodic", {})
    assert again["spool_id"] != first["spool_id"]
    assert again["sequence"] == 3  # the waiting files keep their names: numbering goes on past them
    assert len(logged) == 1 and "new spool id" in logged[0]
