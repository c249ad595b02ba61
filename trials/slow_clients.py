"""Slow and idle clients against host-serve (issue 18): while one client holds many connections that never
finish their headers (slowloris), drips request bodies a byte a second, or leaves keep-alive connections idle,
do the devices' requests still get answered, and does host-serve's log stay small?

    python trials/slow_clients.py [--half-open 1100] [--drips 100] [--idle 100] [--seconds 40] [--json out.json]

host-serve runs as its own process (the real command) under an open-file limit of 1,024 (a common default),
over a tiny real run folder. For ``--seconds``, the slow clients are opened and held, and every 0.25 s a
legitimate client sends GET /health, GET /generations and a POST /reports with the token (a device's new
connection each time). Counted: legitimate requests answered and their latency (p50, p99, max), how many of
the slow connections host-serve closed (408 or closed) by the end, host-serve's open files at the peak, and the
size of its log. Exit status 1 when a legitimate request went unanswered or the log passed 1 MB.
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from host.machine_info import describe_machine
from host.evolve.tiny_run import make_tiny_run

TOKEN = "slow-clients-token-0123456789abcdef"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def legit(port, card, sequence):
    """One device's requests, each on a new connection: the seconds they took, or None when unanswered."""
    import http.client
    report = json.dumps({"schema": 1, "device_id": "legit", "sequence": sequence, "kind": "periodic",
                         "created_at": time.time(), "model_sha256": card["sha256"], "backend": "onnxruntime",
                         "precision": "fp32", "platform": {}, "stats": {"frames": 1, "fps": 1.0}})
    results = []
    for method, path, body in (("GET", "/health", None), ("GET", "/generations", None), ("POST", "/reports", report)):
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(method, path, body=body, headers={"Authorization": "Bearer " + TOKEN,
                                                                 "Content-Type": "application/json"})
            status = connection.getresponse().status
            connection.close()
            results.append(time.monotonic() - started if status < 500 else None)
        except OSError:
            results.append(None)
    return results


def open_files(pid):
    try:
        return len(os.listdir("/proc/{}/fd".format(pid)))
    except OSError:
        return None


def closed_by_server(sock):
    """Whether host-serve has closed this connection (what it answered before read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False  # still open, nothing more to read
    except OSError:
        return True  # reset: closed


def trial(half_open=1100, drips=100, idle=100, seconds=40.0, log=print):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = half_open + drips + idle + 200  # the client's own sockets
    if hard != resource.RLIM_INFINITY and hard < want:
        raise SystemExit("this shell's hard open-file limit {} is below {}: raise it (ulimit -Hn)".format(hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    figures = {"half_open": half_open, "drips": drips, "idle": idle, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as folder:
        folder = Path(folder)
        run = folder / "run"
        run.mkdir()
        card = make_tiny_run(run)[0]
        (folder / "token").write_text(TOKEN + "\n")
        (folder / "token").chmod(0o600)
        port = free_port()
        log_path = folder / "host-serve.log"
        with open(str(log_path), "w") as log_file:
            host = subprocess.Popen(
                [sys.executable, "-m", "host.serve.server", "--run", str(run), "--token-file", str(folder / "token"),
                 "--bind", "127.0.0.1:{}".format(port)], stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if host.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("host-serve did not start: " + log_path.read_text())
                    time.sleep(0.1)
            slow, stop = [], threading.Event()
            opened = {"half_open": 0, "drips": 0, "idle": 0, "refused": 0}

            def connect(kind, first):
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    sock.sendall(first)
                    slow.append((kind, sock))
                    opened[kind] += 1
                except OSError:
                    opened["refused"] += 1
            for _ in range(idle):  # one whole request, then idle on the keep-alive connection
                connect("idle", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(half_open):
                connect("half_open", b"GET /health HTTP/1.1\r\nHost: x\r\n")
            drippers = []
            for _ in range(drips):
                connect("drips", "POST /reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: "
                                 "application/json\r\nContent-Length: 1000\r\n\r\n{{".format(TOKEN).encode())
                drippers.append(slow[-1][1])

            def drip():
                while not stop.wait(1.0):
                    for sock in drippers:
                        try:
                            sock.sendall(b" ")
                        except OSError:
                            pass
            threading.Thread(target=drip, daemon=True).start()
            latencies, unanswered, sequence, peak_files = [], 0, 0, 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sequence += 1
                for took in legit(port, card, sequence):
                    if took is None:
                        unanswered += 1
                    else:
                        latencies.append(took)
                peak_files = max(peak_files, open_files(host.pid) or 0)
                time.sleep(0.25)
            stop.set()
            closed = {}
            for kind, sock in slow:
                closed[kind] = closed.get(kind, 0) + closed_by_server(sock)
                sock.close()
        finally:
            host.terminate()
            host.wait(timeout=60)
        text = log_path.read_text(errors="replace")
    figures.update(opened=opened, legit_requests=len(latencies) + unanswered, legit_unanswered=unanswered,
                   latency_s={"p50": round(percentile(latencies, 0.5) or 0, 3),
                              "p99": round(percentile(latencies, 0.99) or 0, 3),
                              "max": round(max(latencies or [0]), 3)},
                   slow_connections_closed_by_host_serve=closed, host_serve_open_files_peak=peak_files,
                   host_serve_log_bytes=len(text.encode()), host_serve_log_lines=len(text.splitlines()),
                   host_serve_tracebacks=text.count("Traceback"),
                   host_serve_log_tail=text[-3000:] if "Traceback" in text else "", machine=describe_machine(),
                   load_average_1m_at_end=round(os.getloadavg()[0], 2))
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half-open", type=int, default=1100)
    parser.add_argument("--drips", type=int, default=100)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    figures = trial(args.half_open, args.drips, args.idle, args.seconds)
    print(json.dumps(figures, indent=1))
    bad = figures["legit_unanswered"] or figures["host_serve_log_bytes"] > 1e6 or figures["host_serve_tracebacks"]
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
