"""Host outages trial (issue 11, trial 2): device-serve reports while host-serve is stopped and restarted, once
with its disk full, and the device itself restarts mid-outage; then a spool at its limit.

    python trials/host_outages.py [--outages 6] [--seed 0] [--report-every 0.1] [--json out.json]

Real processes on loopback: host-serve (uvicorn) over a tiny run folder, device-serve over the synthetic scene
with --report-to. Phase 1: ``--outages`` times, host-serve is killed (SIGKILL and SIGTERM alternately), stays
down 1-3 s, and is started again; in the middle outage device-serve is stopped (SIGTERM) and started again on
the same spool. Phase 2: the disk under the run folder fills up for 3 s (a small tmpfs when mount works here,
else the run folder stays where it is and the phase is skipped, said so). At the end device-serve is stopped
(final report) and every report it wrote must be in lineage.sqlite exactly once, in sequence order, and the
spool must be empty. Phase 3: with the host down, a device with --spool-limit 15 writes ~40 reports: the
oldest periodic ones are dropped and it says so, the final report is kept; once the host is back, exactly the
reports not dropped arrive. Prints the figures; exit status 1 if a check fails.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOKEN = "outage-trial-token-0123456789abcdef"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env():
    return dict(os.environ, OMP_NUM_THREADS="1")


class HostServe(object):
    def __init__(self, run, port, token_file, log):
        self.run, self.port, self.token_file, self.log = run, port, token_file, log
        self.process = None
        self.starts = 0
        self.slow_stops = 0

    def start(self):
        # its output goes to a file: a pipe nobody reads fills up with the 500s' tracebacks and blocks it
        self.output = open(os.path.join(os.path.dirname(self.token_file), "host-serve.log"), "a")
        self.process = subprocess.Popen([sys.executable, "-m", "host.serve.server", "--run", self.run, "--bind",
                                         "127.0.0.1:{}".format(self.port), "--token-file", self.token_file],
                                        stdout=self.output, stderr=subprocess.STDOUT, env=env(), cwd=PROJECT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:{}/health".format(self.port), timeout=1):
                    self.starts += 1
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("host-serve ended; see " + self.output.name)
                time.sleep(0.1)
        raise RuntimeError("host-serve did not answer within 60 s")

    def stop(self, how=signal.SIGTERM):
        """Stop host-serve with ``how``; one that has not ended 15 s after SIGTERM is killed and counted."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.slow_stops += 1
                self.log("  host-serve still running 15 s after {}; SIGKILL".format(how.name))
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None


class DeviceServe(object):
    def __init__(self, model, port, spool, device_id, report_every, stats, extra=()):
        self.args = [sys.executable, "-m", "device.serve", "--model", model, "--source", "synthetic", "--loop",
                     "--warmup", "0", "--status-every", "0", "--report-to", "http://127.0.0.1:{}".format(port),
                     "--token", TOKEN, "--report-every", str(report_every), "--spool-dir", spool, "--device-id",
                     device_id, "--stats-json", stats] + list(extra)
        self.process = None
        self.output = []

    def start(self):
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        universal_newlines=True, env=env(), cwd=PROJECT)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        self.output.append(out)
        return self.process.returncode


def stored_reports(run, device_id):
    db = sqlite3.connect(os.path.join(run, "lineage.sqlite"), timeout=10)
    try:
        rows = db.execute("SELECT sequence, kind FROM device_reports WHERE device_id = ? ORDER BY id",
                          (device_id,)).fetchall()
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return rows, integrity


def spooled(spool):
    if not os.path.isdir(spool):  # a device that has not started yet (a busy machine) has no spool yet
        return []
    return sorted(name for name in os.listdir(spool) if name.startswith("report-") and name.endswith(".json"))


def last_sequence(spool):
    with open(os.path.join(spool, "sequence")) as handle:
        return int(handle.read().strip())


def wait_empty(spool, seconds=30):
    deadline = time.monotonic() + seconds
    while spooled(spool) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not spooled(spool)


def fill_disk(folder):
    """Write a filler file until the disk is full; return its path."""
    path = os.path.join(folder, "filler.bin")
    block = b"\0" * 4096
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(descriptor, block)  # unbuffered: the ENOSPC comes here, not at close
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return path


def make_run(folder):
    from host.evolve.tiny_run import make_tiny_run
    from pathlib import Path
    make_tiny_run(Path(folder))
    return os.path.join(folder, "gen-00", "model.onnx")


def trial(outages, seed, report_every, log=print):
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="host-outages-")
    mounted = False
    run = os.path.join(work, "run")
    os.makedirs(run)
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", run],
                                  stderr=subprocess.DEVNULL) == 0
    figures = {"disk_full": "tmpfs of 12 MB under the run folder" if mounted else "skipped: tmpfs cannot be mounted here"}
    try:
        model_source = make_run(run)
        model = os.path.join(work, "model.onnx")
        shutil.copy(model_source, model)
        token_file = os.path.join(work, "token")
        with open(token_file, "w") as handle:
            handle.write(TOKEN + "\n")
        os.chmod(token_file, 0o600)
        port = free_port()
        host = HostServe(run, port, token_file, log)
        spool = os.path.join(work, "spool")
        device = DeviceServe(model, port, spool, "outage-dev", report_every, os.path.join(work, "stats.json"))
        host.start()
        device.start()
        time.sleep(2.0)
        device_restarts, kills = 0, {"SIGKILL": 0, "SIGTERM": 0}
        for number in range(outages):
            time.sleep(rng.uniform(1.0, 2.0))
            how = signal.SIGKILL if number % 2 == 0 else signal.SIGTERM
            host.stop(how)
            kills[how.name] += 1
            down = rng.uniform(1.0, 3.0)
            log("outage {}: host-serve stopped by {}, down {:.1f} s".format(number + 1, how.name, down))
            if number == outages // 2:
                code = device.stop()
                waiting = len(spooled(spool))
                log("  device-serve stopped mid-outage (exit {}), {} reports wait in its spool; starting it "
                    "again".format(code, waiting))
                figures["waiting_across_device_restart"] = waiting
                device_restarts += 1
                device.start()
                time.sleep(max(0.0, down - 1.0))
            else:
                time.sleep(down)
            log("  {} reports waiting; host-serve starts again".format(len(spooled(spool))))
            host.start()
        figures.update(outages=outages, host_kills=kills, host_starts=host.starts, device_restarts=device_restarts)
        if mounted:
            drained = time.monotonic() + 180  # the backlog of the outages delivered first (the device backs off
            while len(spooled(spool)) > 5 and time.monotonic() < drained:  # up to 30 s), so that what waits
                time.sleep(0.2)  # after the disk fills is what the full disk refused
            filler = fill_disk(run)
            log("disk full: {} of filler; {} reports waiting".format(os.path.getsize(filler), len(spooled(spool))))
            # SQLite reuses its WAL file's pages, so a full disk bites only once the WAL or the database must
            # grow: keep it full until the host has refused 20 reports (they wait in the spool), or 40 s
            full_since = time.monotonic()
            while len(spooled(spool)) < 20 and time.monotonic() - full_since < 40:
                time.sleep(0.2)
            figures["disk_full_seconds"] = round(time.monotonic() - full_since, 1)
            figures["waiting_when_disk_full"] = len(spooled(spool))
            log("  {} reports waiting after {} s of a full disk".format(figures["waiting_when_disk_full"],
                                                                      figures["disk_full_seconds"]))
            os.remove(filler)
            log("disk freed")
        deadline = time.monotonic() + 60  # the device retries with back-off (up to 30 s) after the 500s
        while spooled(spool) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        code = device.stop()
        figures["device_exit"] = code
        figures["spool_empty_at_end"] = wait_empty(spool)
        written = last_sequence(spool)
        rows, integrity = stored_reports(run, "outage-dev")
        sequences = [s for s, _ in rows]
        figures.update(reports_written=written, reports_stored=len(sequences),
                       lost=len(set(range(1, written + 1)) - set(sequences)),
                       duplicates=len(sequences) - len(set(sequences)), in_order=sequences == sorted(sequences),
                       finals=sum(1 for _, kind in rows if kind == "final"), integrity=integrity,
                       host_answers_5xx=sum(line.count("host answered 5") for out in device.output
                                            for line in out.splitlines()),
                       output_tail=[line for out in device.output for line in out.splitlines()
                                    if "unreachable" in line or "reached again" in line][:6])

        # phase 3: a spool at its limit, host down
        host.stop(signal.SIGTERM)
        spool_limited = os.path.join(work, "spool-limited")
        limited = DeviceServe(model, port, spool_limited, "limit-dev", 0.1, os.path.join(work, "stats-limited.json"),
                              extra=["--spool-limit", "15"])
        limited.start()
        deadline = time.monotonic() + 300  # until 19 reports were written (past the limit of 15): a count, not
        while time.monotonic() < deadline:  # a time (at load 10 a fixed 4 s wrote only 12)
            try:
                if last_sequence(spool_limited) >= 19:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        limited.stop()
        with open(os.path.join(work, "stats-limited.json")) as handle:
            evicted = json.load(handle).get("reports_evicted")
        waiting = spooled(spool_limited)
        kinds = [json.load(open(os.path.join(spool_limited, name)))["kind"] for name in waiting]
        host.start()
        again = DeviceServe(model, port, spool_limited, "limit-dev", 60, os.path.join(work, "stats-again.json"),
                            extra=["--duration", "1.5"])
        again.start()
        again.process.wait(timeout=60)
        rows, integrity_limited = stored_reports(run, "limit-dev")
        host.stop()
        figures["host_slow_stops"] = host.slow_stops
        with open(host.output.name) as handle:
            figures["host_disk_full_errors"] = handle.read().count("database or disk is full")
        first_run = [(s, k) for s, k in rows if s <= last_sequence(spool_limited) - 1]
        figures["spool_limit"] = {
            "limit": 15, "written_while_down": int(os.path.basename(waiting[-1])[7:19]) if waiting else 0,
            "evicted": evicted, "waiting": len(waiting), "final_kept": kinds[-1:] == ["final"],
            "said_so": any("is full" in line for line in "".join(limited.output).splitlines()),
            "stored_from_the_full_spool": len(first_run), "integrity": integrity_limited,
            "stored_equals_waiting": sorted(s for s, _ in first_run) == [int(n[7:19]) for n in waiting]}
    finally:
        if mounted:
            subprocess.call(["umount", "-l", run])
        shutil.rmtree(work, ignore_errors=True)
    return figures


def problems(figures):
    found = []
    for key in ("lost", "duplicates"):
        if figures[key]:
            found.append("{} {}".format(figures[key], key))
    if not figures["in_order"]:
        found.append("reports stored out of order")
    if figures["integrity"] != "ok":
        found.append("lineage.sqlite integrity: " + figures["integrity"])
    if not figures["spool_empty_at_end"]:
        found.append("reports left in the spool")
    if figures["device_exit"] != 0:
        found.append("device-serve exited {}".format(figures["device_exit"]))
    if figures.get("host_slow_stops"):
        found.append("host-serve needed SIGKILL {} time(s) after SIGTERM".format(figures["host_slow_stops"]))
    if "waiting_when_disk_full" in figures and figures["waiting_when_disk_full"] < 20:
        found.append("the full disk never made the host refuse reports ({} waiting)".format(
            figures["waiting_when_disk_full"]))
    if figures["finals"] != 2:
        found.append("{} final reports stored, not 2 (one per device run)".format(figures["finals"]))
    limited = figures["spool_limit"]
    if not (limited["evicted"] and limited["said_so"] and limited["final_kept"] and limited["waiting"] == 15
            and limited["stored_equals_waiting"]):
        found.append("spool limit: {}".format(limited))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outages", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-every", type=float, default=0.1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    figures = trial(args.outages, args.seed, args.report_every, log=lambda m: print(m, flush=True))
    found = problems(figures)
    figures["problems"] = found
    from host.machine_info import describe_machine
    figures["machine"] = describe_machine()
    figures["finished_at"] = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    print("machine: {} | finished {}".format(figures["machine"], figures["finished_at"]))
    figures.setdefault("waiting_when_disk_full", "n/a")
    print(json.dumps(figures, indent=2, sort_keys=True))
    print("host outages: {outages} outages ({host_kills}), {device_restarts} device restart, disk full: {disk_full} "
          "({waiting_when_disk_full} reports refused and waiting, {host_disk_full_errors} disk-full errors at the host); "
          "{reports_written} reports written, {reports_stored} stored, {lost} lost, {duplicates} duplicated, "
          "in order: {in_order}; spool limit: {evicted} evicted, final kept: {final_kept}; {verdict}".format(
              evicted=figures["spool_limit"]["evicted"], final_kept=figures["spool_limit"]["final_kept"],
              verdict="PASS" if not found else "FAIL: " + "; ".join(found), **figures))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, sort_keys=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
