"""Spool faults and a reused device id (issue 18): the device's report spool (device/reports.py) delivering to a
real host-serve process while its identity and its disk go wrong; every report written is counted on the host.

    python trials/spool_faults.py [--rounds 5] [--reports 20] [--seed 0] [--json out.json]

Each round, against one host-serve (the real command, its own process, a tiny real run folder):

1. **reused device id**: ``--rounds`` fresh spool folders (a reflashed board, a new container) all under one
   device id, each writing ``--reports`` reports and delivering them;
2. **damaged counter**: one spool whose ``sequence`` file is overwritten with garbage (bit rot) between two
   batches; and one whose ``sequence`` file is deleted;
3. **undecodable files**: files that are not UTF-8, not JSON, or cut short dropped among the waiting reports;
   they must go to ``rejected/`` and the rest be delivered;
4. **a copied spool** (two devices, one spool folder copied between them, one --device-id): the same
   (device_id, spool_id, sequence) with different bodies: both must be stored, the second as a conflict;
5. **a full disk** (root only: a 1 MB tmpfs): the spool's disk fills while reports are written; the reporter
   must survive, count what it could not write and go on once room is back;
6. **answers that are not host-serve storing it** (issue 32): the same spool delivered first to a captive
   portal (302 to a login page that answers 200), a proxy that answers 408, a web server that answers 200 with
   a page, and host-serve's address with a mistyped path (404); every report must stay in the spool, none in
   rejected/, then all be stored once the real address is given;
7. **the run folder replaced while served** (issue 32): the served run is moved aside and a copy put in its
   place; host-serve must refuse (503) rather than store into the moved database; the reports wait and are
   stored in the new folder's database by a host-serve started on it.

Counts: written (reports the spools made), stored (rows on the host for them), lost = written - stored,
duplicated (rows stored twice for one report), conflicts kept, files set aside, unwritten (ENOSPC, counted
by the reporter). Exit status 1 when anything was lost or duplicated.
"""
import argparse
import errno
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from device.reports import Reporter, ReportSpool
from host.machine_info import describe_machine
from host.evolve.tiny_run import make_tiny_run

TOKEN = "spool-faults-token-0123456789abcdef"


class HostServe(object):
    """host-serve's real command on a free loopback port."""

    def __init__(self, run, token_file):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = "http://127.0.0.1:{}".format(port)
        self.process = subprocess.Popen([sys.executable, "-m", "host.serve.server", "--run", str(run), "--token-file",
                                         str(token_file), "--bind", "127.0.0.1:{}".format(port)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        line = self.process.stdout.readline()
        if "serving" not in line:
            raise RuntimeError("host-serve did not start: " + line + self.process.stdout.read())

    def stop(self):
        self.process.terminate()
        return self.process.communicate(timeout=60)[0]


def rows(run, device_id):
    with sqlite3.connect(str(run / "lineage.sqlite")) as db:
        return db.execute("SELECT spool_id, sequence, conflict, body FROM device_reports WHERE device_id = ?",
                          (device_id,)).fetchall()


def body(card, rng):
    return {"model_sha256": card["sha256"], "backend": "onnxruntime", "precision": "fp32",
            "platform": {"hostname": "trial"}, "stats": {"frames": rng.randrange(1, 10 ** 6),
                                                         "fps": round(rng.uniform(1, 500), 3)}}


def deliver(url, spool, logged):
    reporter = Reporter(url, spool, dict, token=TOKEN, log=logged.append, timeout_s=30)
    for _ in range(20):
        if reporter.flush() and not spool.pending():
            break
    return reporter


def count(run, device_id, written, logged, figures, name):
    stored = rows(run, device_id)
    identities = [(s, q, c) for s, q, c, _ in stored]
    texts = {json.dumps(json.loads(b), sort_keys=True) for _, _, _, b in stored}
    figures[name] = {"written": written, "stored": len(stored),
                     "lost": max(0, written - len(texts)), "duplicated": len(identities) - len(set(identities)),
                     "conflicts_kept": sum(1 for _, _, c, _ in stored if c)}
    return figures[name]


def reused_device_id(folder, url, run, card, rng, rounds, reports, figures):
    logged, written = [], 0
    for board in range(rounds):
        spool = ReportSpool(str(folder / "reused-{}".format(board)), device_id="reused-id", log=logged.append)
        for _ in range(reports):
            spool.add("periodic", body(card, rng))
            written += 1
        deliver(url, spool, logged)
    return count(run, "reused-id", written, logged, figures, "reused device id, fresh spools")


def damaged_counter(folder, url, run, card, rng, reports, figures):
    logged, written = [], 0
    for damage in ("garbage", "deleted"):
        spool = ReportSpool(str(folder / ("damaged-" + damage)), device_id="damaged-" + damage, log=logged.append)
        for batch in range(3):
            for _ in range(reports):
                spool.add("periodic", body(card, rng))
                written += 1
            deliver(url, spool, logged)
            counter = Path(spool.folder) / "sequence"
            if damage == "garbage":
                counter.write_bytes(bytes(rng.randrange(256) for _ in range(8)))
            else:
                counter.unlink()
    a = count(run, "damaged-garbage", 3 * reports, logged, figures, "sequence file garbage")
    b = count(run, "damaged-deleted", 3 * reports, logged, figures, "sequence file deleted")
    figures["damaged counter: new spool ids said"] = sum("new spool id" in line for line in logged)
    return a, b


def undecodable_files(folder, url, run, card, rng, reports, figures):
    logged = []
    spool = ReportSpool(str(folder / "rotten"), device_id="rotten", log=logged.append)
    for _ in range(reports):
        spool.add("periodic", body(card, rng))
    junk = [b"\xff\xfe\x00\x01", b'{"cut', b"\xc3", b"", b"[1, 2]", b"\x00" * 100]
    for index, data in enumerate(junk):
        (Path(spool.folder) / "report-{:012d}.json".format(10 ** 9 + index)).write_bytes(data)
    reporter = deliver(url, spool, logged)
    result = count(run, "rotten", reports, logged, figures, "undecodable files among the reports")
    result["junk_files"] = len(junk)
    result["set_aside"] = len(os.listdir(str(Path(spool.folder) / "rejected")))
    result["delivered"] = reporter.delivered
    return result


def copied_spool(folder, url, run, card, rng, reports, figures):
    logged = []
    original = folder / "copied-a"
    spool = ReportSpool(str(original), device_id="twin", log=logged.append)
    spool.add("periodic", body(card, rng))
    shutil.copytree(str(original), str(folder / "copied-b"))  # the copy carries the spool id and the counter
    twin = ReportSpool(str(folder / "copied-b"), device_id="twin", log=logged.append)
    written = 1
    for _ in range(reports):
        spool.add("periodic", body(card, rng))
        twin.add("periodic", body(card, rng))
        written += 2
    first, second = deliver(url, spool, logged), deliver(url, twin, logged)
    result = count(run, "twin", written, logged, figures, "a spool folder copied to a second device")
    result["conflicts_said_by_the_device"] = first.conflicts + second.conflicts
    return result


def full_disk(folder, url, run, card, rng, reports, figures):
    """A 1 MB tmpfs for the spool, filled while the reporter runs; needs root (mount)."""
    mount = folder / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.call(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                            stderr=subprocess.DEVNULL) != 0:
        figures["full spool disk"] = "not run (needs root to mount a small tmpfs)"
        return None
    logged = []
    try:
        spool = ReportSpool(str(mount / "spool"), device_id="full-disk", log=logged.append)
        reporter = Reporter(url, spool, lambda: body(card, rng), token=TOKEN, interval_s=0.02, log=logged.append)
        made, filler = 0, mount / "filler"
        with open(str(filler), "wb") as handle:  # fill the disk (ENOSPC from here on)
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
        reporter.start()
        deadline = time.monotonic() + 120
        while reporter.unspooled < reports and time.monotonic() < deadline:
            time.sleep(0.02)
        full_errors = reporter.unspooled
        filler.unlink()  # room again
        before = reporter.delivered
        while reporter.delivered < before + reports and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = reporter._thread.is_alive()
        reporter.close(body(card, rng))
        stored = rows(run, "full-disk")
        figures["full spool disk"] = {"reports_not_written_while_full": full_errors, "reporter_alive": alive,
                                      "delivered_after_room_came_back": reporter.delivered - before,
                                      "written": reporter.delivered, "stored": len(stored),
                                      "lost": reporter.delivered - len(stored),
                                      "said": sum("the disk is full" in line for line in logged)}
        return figures["full spool disk"]
    finally:
        subprocess.call(["umount", str(mount)])


class OddServer(object):
    """A loopback HTTP server that answers every POST as ``mode`` says: "portal" (302 to /login, which answers
    200 to a GET), "proxy-408", "web-200" (a page, not host-serve's answer). Counts the requests."""

    def __init__(self, mode):
        import http.server
        import threading
        server_self = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body=b"", headers=()):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                server_self.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if mode == "portal":
                    self._answer(302, headers=[("Location", "/login")])
                elif mode == "proxy-408":
                    self._answer(408, b"Request Timeout")
                else:
                    self._answer(200, b"<html>welcome</html>", [("Content-Type", "text/html")])

            def do_GET(self):
                self._answer(200, b"<html>login</html>", [("Content-Type", "text/html")])
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def wrong_answers(folder, url, run, card, rng, reports, figures):
    logged, written = [], 0
    spool = ReportSpool(str(folder / "wrong-answers"), device_id="wrong-answers", log=logged.append)
    for _ in range(reports):
        spool.add("periodic", body(card, rng))
        written += 1
    kept_after = {}
    for mode in ("portal", "proxy-408", "web-200"):
        odd = OddServer(mode)
        try:
            Reporter(odd.url, spool, dict, token=TOKEN, log=logged.append, timeout_s=5).flush()
        finally:
            odd.stop()
        kept_after[mode] = {"posted": odd.requests, "waiting": len(spool.pending())}
    Reporter(url + "/report", spool, dict, token=TOKEN, log=logged.append, timeout_s=5).flush()  # a mistyped path
    kept_after["host-serve, mistyped path (404)"] = {"waiting": len(spool.pending())}
    rejected = len(os.listdir(os.path.join(spool.folder, "rejected"))) if os.path.isdir(
        os.path.join(spool.folder, "rejected")) else 0
    deliver(url, spool, logged)
    result = count(run, "wrong-answers", written, logged, figures, "answers that are not host-serve storing it")
    result.update(kept=kept_after, set_aside=rejected, waiting_at_end=len(spool.pending()))
    return result


def replaced_run(folder, card, rng, reports, token_file, figures):
    """The served run folder moved aside and a copy put in its place while host-serve serves it."""
    logged, written = [], 0
    run = folder / "served-run"
    run.mkdir()
    card = make_tiny_run(run)[0]
    host = HostServe(run, token_file)
    try:
        spool = ReportSpool(str(folder / "replaced"), device_id="replaced-run", log=logged.append)
        spool.add("periodic", body(card, rng))
        written += 1
        deliver(host.url, spool, logged)  # one stored in the original
        shutil.move(str(run), str(folder / "served-run.moved"))
        shutil.copytree(str(folder / "served-run.moved"), str(run))
        for _ in range(reports):
            spool.add("periodic", body(card, rng))
            written += 1
        Reporter(host.url, spool, dict, token=TOKEN, log=logged.append, timeout_s=5).flush()
        waiting = len(spool.pending())
    finally:
        output = host.stop()
    moved_rows = len(rows(folder / "served-run.moved", "replaced-run"))
    host = HostServe(run, token_file)
    try:
        deliver(host.url, spool, logged)
    finally:
        output += host.stop()
    result = count(run, "replaced-run", written, logged, figures, "run folder replaced while served")
    result.update(waiting_while_replaced=waiting, stored_in_the_moved_folder_after_the_move=moved_rows - 1,
                  host_tracebacks=output.count("Traceback"))
    return result


def trial(rounds=5, reports=20, seed=0, log=print):
    rng = random.Random(seed)
    figures = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spool-faults-") as folder:
        folder = Path(folder)
        run = folder / "run"
        run.mkdir()
        card = make_tiny_run(run)[0]
        token_file = folder / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        host = HostServe(run, token_file)
        try:
            log("reused device id:", reused_device_id(folder, host.url, run, card, rng, rounds, reports, figures))
            log("damaged counter:", damaged_counter(folder, host.url, run, card, rng, reports, figures))
            log("undecodable files:", undecodable_files(folder, host.url, run, card, rng, reports, figures))
            log("copied spool:", copied_spool(folder, host.url, run, card, rng, reports, figures))
            log("full disk:", full_disk(folder, host.url, run, card, rng, reports, figures))
            log("wrong answers:", wrong_answers(folder, host.url, run, card, rng, reports, figures))
        finally:
            output = host.stop()
        log("replaced run:", replaced_run(folder, card, rng, reports, token_file, figures))
        with sqlite3.connect(str(run / "lineage.sqlite")) as db:
            figures["integrity_check"] = db.execute("PRAGMA integrity_check").fetchone()[0]
    figures["host_tracebacks"] = output.count("Traceback")
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["machine"] = describe_machine()
    figures["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return figures


def problems(figures):
    found = []
    for name, value in figures.items():
        if isinstance(value, dict) and (value.get("lost") or value.get("duplicated")):
            found.append("{}: {} lost, {} duplicated".format(name, value.get("lost"), value.get("duplicated")))
    wrong = figures.get("answers that are not host-serve storing it")
    if isinstance(wrong, dict) and (wrong["set_aside"] or any(v["waiting"] < wrong["written"]
                                                              for v in wrong["kept"].values())):
        found.append("a report left the spool on an answer that was not host-serve storing it: {}".format(wrong))
    replaced = figures.get("run folder replaced while served")
    if isinstance(replaced, dict) and (replaced["stored_in_the_moved_folder_after_the_move"] or
                                       replaced["host_tracebacks"]):
        found.append("run folder replaced: {}".format(replaced))
    disk = figures.get("full spool disk")
    if isinstance(disk, dict) and not disk["reporter_alive"]:
        found.append("the reporter died on a full disk")
    if figures["host_tracebacks"] or figures["integrity_check"] != "ok":
        found.append("host: {} tracebacks, integrity {}".format(figures["host_tracebacks"], figures["integrity_check"]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh spools under one device id")
    parser.add_argument("--reports", type=int, default=20, help="reports per spool and batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    figures = trial(args.rounds, args.reports, args.seed)
    found = problems(figures)
    print(json.dumps(figures, indent=1))
    print("problems:", found or "none")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(figures, problems=found), indent=1) + "\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
