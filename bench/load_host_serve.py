"""Load on host-serve: many simulated devices reporting at a fixed rate on loopback (issue 11, trial 5).

    python bench/load_host_serve.py [--devices 50] [--hz 10] [--seconds 60] [--json out.json]

host-serve runs as its own process (the real CLI) on 127.0.0.1 over a tiny real run folder. Each simulated
device holds one keep-alive connection and POSTs a real-sized report (the shape device-serve sends) every
1/hz seconds on a fixed schedule: a late answer delays only that device's next send, it never skips one, so
every device sends exactly hz x seconds reports with sequence numbers 1, 2, 3, ... The client is plain asyncio
over sockets (one process, little CPU), so the figure is host-serve's and not an HTTP library's.

Prints: reports sent, answered 201 / 200 (duplicate) / other, reports per second offered and stored, latency
p50 / p90 / p99 / max (send to the whole answer), and from lineage.sqlite after host-serve stopped: rows
stored, rows lost (sent with a 201 but not in the table, or sequences missing per device), rows duplicated,
`PRAGMA integrity_check`. Exit status 1 when a report was lost or duplicated or any answer was not 201.
tests/host/test_load_host_serve.py runs it with 10 devices for 3 s.
"""
import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.machine import describe_machine  # noqa: E402

from trials.fuzz_host_serve import TOKEN, HostServe, make_run  # noqa: E402


def report_body(device: int, sequence: int, sha256: str) -> bytes:
    """A report as device-serve sends one: about 600 bytes of JSON."""
    return json.dumps({
        "schema": 1, "device_id": "load-{:03d}".format(device), "sequence": sequence, "kind": "periodic",
        "created_at": time.time(), "model_sha256": sha256, "backend": "onnxruntime", "precision": "fp32",
        "platform": {"hostname": "sim-{:03d}".format(device), "machine": "aarch64", "python": "3.6.9",
                     "jetpack": "4.6.1"},
        "stats": {"frames": sequence * 30, "fps": 29.9, "latency_ms": {"p50": 12.1, "p95": 14.0, "p99": 16.2},
                  "dropped": 0, "rss_mb": 180.5, "gpu_mem_mb": 412.0, "network_fps": 81.2, "cpu_percent": 63.0,
                  "stages_ms": {"infer": {"p50": 11.0, "p95": 12.5, "p99": 13.1, "mean": 11.2}}}}).encode()


async def device(number: int, port: int, sha256: str, hz: float, count: int, start: float, latencies: list,
                 statuses: dict, answered: set):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "POST /reports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n"\
        .format(TOKEN)
    try:
        for sequence in range(1, count + 1):
            delay = start + (sequence - 1) / hz - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = report_body(number, sequence, sha256)
            sent = time.monotonic()
            writer.write((head + "Content-Length: {}\r\n\r\n".format(len(body))).encode() + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.monotonic() - sent)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
            if status == 201:
                answered.add((number, sequence))
    finally:
        writer.close()


async def offer(port: int, sha256: str, devices: int, hz: float, seconds: float):
    latencies, statuses, answered = [], {}, set()
    count = int(round(hz * seconds))
    start = time.monotonic() + 0.5
    # devices start spread over one period, as real ones would
    tasks = [device(number, port, sha256, hz, count, start + number / (hz * devices), latencies, statuses, answered)
             for number in range(devices)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - start
    errors = [repr(result) for result in results if isinstance(result, BaseException)]
    return latencies, statuses, answered, elapsed, errors


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))] if ordered else None


def load(devices: int = 50, hz: float = 10.0, seconds: float = 60.0, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="load-host-serve-") as folder:
        folder = Path(folder)
        run = make_run(folder)
        database = sqlite3.connect(str(run / "lineage.sqlite"))
        sha256 = database.execute("SELECT sha256 FROM generations").fetchone()[0]
        database.close()
        server = HostServe(run, folder / "token")
        cpu_before = os.times()
        try:
            log("load: {} devices x {} Hz for {} s on {} ...".format(devices, hz, seconds, server.url))
            latencies, statuses, answered, elapsed, errors = asyncio.run(
                offer(server.port, sha256, devices, hz, seconds))
        finally:
            output = server.stop()
        cpu_after = os.times()
        database = sqlite3.connect(str(run / "lineage.sqlite"))
        try:
            rows = database.execute("SELECT device_id, sequence FROM device_reports").fetchall()
            integrity = database.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            database.close()
    count = int(round(hz * seconds))
    sent = len(latencies)
    stored = {(int(device_id.split("-")[1]), sequence) for device_id, sequence in rows}
    expected = {(number, sequence) for number in range(devices) for sequence in range(1, count + 1)}
    return {
        "devices": devices, "hz": hz, "seconds": seconds, "offered": devices * count, "sent": sent,
        "answered": {str(key): value for key, value in sorted(statuses.items())},
        "five_xx": sum(value for key, value in statuses.items() if key >= 500),
        "elapsed_s": round(elapsed, 2), "offered_per_s": round(devices * hz, 1),
        "sent_per_s": round(sent / elapsed, 1) if elapsed else None,
        "stored_per_s": round(len(rows) / elapsed, 1) if elapsed else None,
        "latency_ms": {name: round(1000 * percentile(latencies, q), 2) if latencies else None
                       for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "rows": len(rows), "lost": len(expected - stored), "lost_after_201": len(answered - stored),
        "duplicated": len(rows) - len(set(rows)), "unexpected_rows": len(stored - expected),
        "integrity_check": integrity, "client_errors": errors[:5],
        "client_cpu_s": round((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 1),
        "host_serve_cpu_s": round((cpu_after.children_user + cpu_after.children_system)
                                  - (cpu_before.children_user + cpu_before.children_system), 1),
        "traceback_in_host_serve": "Traceback" in output, "machine": describe_machine(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def passed(result: dict) -> bool:
    return (result["lost"] == 0 and result["duplicated"] == 0 and result["five_xx"] == 0 and not result["client_errors"]
            and result["answered"] == {"201": result["offered"]} and result["integrity_check"] == "ok"
            and not result["traceback_in_host_serve"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--hz", type=float, default=10.0, help="reports per second per device")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    result = load(args.devices, args.hz, args.seconds)
    print(("offered {offered} ({offered_per_s}/s) | sent {sent} in {elapsed_s} s ({sent_per_s}/s) | stored {rows} "
           "({stored_per_s}/s) | answers {answered} | 5xx {five_xx}").format(**result))
    print("latency ms p50 {p50} | p90 {p90} | p99 {p99} | max {max}".format(**result["latency_ms"]))
    print(("lost {lost} | lost after a 201 {lost_after_201} | duplicated {duplicated} | unexpected {unexpected_rows} | "
           "integrity {integrity_check} | CPU s: host-serve {host_serve_cpu_s}, client {client_cpu_s}").format(**result))
    print("machine: {machine} | load average at the end {load_average_1m_at_end}".format(**result))
    if result["client_errors"]:
        print("client errors:", result["client_errors"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
