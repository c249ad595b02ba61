"""Fuzz host-serve's HTTP API from its own OpenAPI schema (issue 11, trial 4) and print the counts.

    python trials/fuzz_host_serve.py [--examples 1500] [--mutants 2000] [--seed N] [--json out.json]

host-serve runs as its own process (the real CLI) on 127.0.0.1 over a tiny real run folder (one exported
generation in lineage.sqlite), with a token file, a secret file beside the run and the run's own private
files (lineage.sqlite, host-serve.token, weights.pt) as bait. Then:

1. schemathesis generates requests for every operation in host-serve's OpenAPI document, schema-valid
   (positive) and schema-breaking (negative) ones, ``--examples`` per operation and mode, sent with the token;
2. the same for POST /reports and GET /reports without a token, with a wrong one and with an empty one;
3. path traversal in every encoding (``../``, ``%2e%2e%2f``, ``%252e``, backslashes, absolute paths, NUL,
   overlong UTF-8) against every route, over a raw socket so nothing normalises the path first;
4. oversized bodies: a Content-Length of 1 GB (no body sent), a chunked body past 64 KiB, with and without
   the token;
5. mutation: ``--mutants`` valid reports each changed a little (a value anywhere replaced by an odd one: lone
   surrogates, NUL, 10**4000, 2**64, -0.0, 5e-324, nesting near the limit, 2,000-element arrays; a key added,
   removed or given twice; a byte flipped, the text cut, an escape or ``1e999`` inserted): what a generator
   from the schema never makes. After each mutant that is stored, GET /reports must still answer 200 with
   JSON; at the end every page of it, /generations and /health.

Checks: no 5xx; every stored report still servable; no response carries the secret, the token, the SQLite file or the weights; every stored
row came from a 201 answer to a body that a second validator (jsonschema-rs, not pydantic) finds valid
against the published schema, with finite numbers only; no row stored by a request without the token;
oversized bodies answered 413 (401 without the token) without the body being sent. Exit status 1 when any
check failed. tests/host/test_fuzz_host_serve.py runs the same with a few examples per operation.
"""
import argparse
import collections
import json
import math
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from host.machine_info import describe_machine

TOKEN = "fuzz-token-" + "0123456789abcdef" * 2
SECRET = "SECRET-OUTSIDE-THE-RUN-7f3a9c"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_run(folder: Path) -> Path:
    """A real run folder (tests/host/test_serve.py's tiny run), a token file and bait beside it."""
    from host.evolve.tiny_run import make_tiny_run
    run = folder / "run"
    run.mkdir()
    make_tiny_run(run)
    (run / "gen-00" / "weights.pt").write_bytes(b"PK\x03\x04 weights-bait " + SECRET.encode())
    (folder / "secret.txt").write_text(SECRET + "\n")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    return run


class HostServe:
    """``host-serve --run RUN`` as a child process on a free loopback port."""

    def __init__(self, run: Path, token_file: Path):
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        environment = dict(os.environ)
        self.process = subprocess.Popen([sys.executable, "-m", "host.serve.server", "--run", str(run), "--token-file",
                                         str(token_file), "--bind", "127.0.0.1:{}".format(self.port)],
                                        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("host-serve did not start: " + (self.process.stdout.read() or ""))
                time.sleep(0.1)

    def stop(self) -> str:
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output or ""


def raw_request(port: int, request: bytes, timeout: float = 10.0):
    """Send bytes as they are; return (status or None, the whole answer) once the server closes or answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        try:
            while True:
                block = connection.recv(65536)
                if not block:
                    break
                answer += block
        except socket.timeout:
            pass
    try:
        return int(answer.split(b" ", 2)[1]), answer
    except (IndexError, ValueError):
        return None, answer


class Tally:
    """Counts requests by phase and status; keeps the first examples of each failure."""

    def __init__(self):
        self.requests, self.by_status, self.failures, self.accepted = 0, {}, {}, []
        self.invalid_accepted = 0
        self.refused_valid = {}  # schema-valid bodies answered 422, by the start of the reason
        self.impossible = []  # operations with no schema-breaking request to make

    def count(self, phase: str, status):
        self.requests += 1
        key = "{} {}".format(phase, status)
        self.by_status[key] = self.by_status.get(key, 0) + 1

    def fail(self, kind: str, example: str):
        examples = self.failures.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(example[:300])
        else:
            examples.append(None)

    def failure_counts(self):
        return {kind: len(examples) for kind, examples in self.failures.items()}


def leaks(body: bytes, forbidden) -> list:
    return [name for name, needle in forbidden.items() if needle in body]


def finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(item) for item in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(item) for item in value)
    return True


def schemathesis_phase(server: HostServe, tally: Tally, examples: int, seed, forbidden, report_validator, log=print):
    """Every operation, positive and negative, with the token; the report routes also without it."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    auth = {"Authorization": "Bearer " + TOKEN}
    without = [{}, {"Authorization": "Bearer wrong-" + TOKEN}, {"Authorization": "Bearer"},
               {"Authorization": "Bearer " + TOKEN[:-1]}, {"Authorization": TOKEN}, {"Authorization": "Basic " + TOKEN}]
    operations = [result.ok() for result in schema.get_all_operations()]

    def run(operation, mode, headers_for, phase, count):
        @settings(max_examples=count, deadline=None, database=None, derandomize=seed is None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            headers = headers_for()
            try:
                response = case.call(base_url=server.url, session=session, headers=headers, timeout=30)
            except Exception as error:  # a dropped connection is a failure too
                tally.count(phase, "error")
                tally.fail("no answer", "{} {}: {!r}".format(case.method, case.formatted_path, error))
                return
            status = response.status_code
            tally.count(phase, status)
            if status >= 500:
                tally.fail("5xx", "{} {} {}: {}".format(case.method, case.formatted_path, case.body, response.text))
            found = leaks(response.content, forbidden)
            if found:
                tally.fail("leak", "{} {} leaked {}".format(case.method, case.formatted_path, found))
            is_report = operation.method.upper() == "POST" and operation.path == "/reports"
            if operation.method.upper() == "POST" and status in (200, 201, 409) and not is_report:
                # another write (a latency table): never without the token, and never stored from a generated body
                # that is not a table for an existing request (there are none in the fuzzed run)
                tally.fail("write stored", "{} {} {}: {}".format(case.method, case.formatted_path, case.body,
                                                                 response.text[:200]))
                return
            if not is_report:
                return
            if (status == 422 and report_validator.is_valid(case.body)
                    and finite_everywhere(case.body)):  # not a failure: the schema cannot say every limit
                detail = str(response.json().get("detail"))[:160]
                tally.refused_valid[detail[:60]] = tally.refused_valid.get(detail[:60], 0) + 1
            if status in (200, 201, 409):
                if "Authorization" not in headers or headers["Authorization"] != "Bearer " + TOKEN:
                    tally.fail("write without the token", "{} {}".format(headers, case.body))
                if not (report_validator.is_valid(case.body) and finite_everywhere(case.body)):
                    tally.invalid_accepted += 1
                    why = [str(error)[:150] for error in report_validator.iter_errors(case.body)][:2] or ["not finite"]
                    tally.fail("invalid body accepted", "{}: {}".format(why, json.dumps(case.body, default=str)))
                if status == 201 or (status == 409 and response.json().get("stored") is True):  # 409: a conflict kept
                    tally.accepted.append(report_identity(case.body))
        if seed is not None:
            send = hypothesis_seed(seed)(send)
        before, started = tally.requests, time.monotonic()
        try:
            send()
            log("  {:<50} {:>6} requests in {:6.1f} s".format(phase, tally.requests - before, time.monotonic() - started))
        except Unsatisfiable:  # e.g. no schema-breaking request exists for GET /health
            tally.impossible.append(phase)

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            phase = "{} {} {}".format(operation.method.upper(), operation.path, mode.value)
            run(operation, mode, lambda: dict(auth), phase, examples)
        if operation.path == "/reports":
            phase = "{} /reports without the token".format(operation.method.upper())
            pick = random.Random(seed or 0)
            run(operation, GenerationMode.POSITIVE, lambda: dict(pick.choice(without)), phase, max(examples // 2, 10))
    session.close()


TRAVERSAL_TARGETS = ["secret.txt", "lineage.sqlite", "host-serve.token", "gen-00/weights.pt", "etc/passwd"]
TRAVERSAL_DOTS = ["../", "..%2f", "..%2F", "%2e%2e%2f", "%2e%2e/", ".%2e/", "%252e%252e%252f", "..%252f", "..\\",
                  "..%5c", "%2e%2e%5c", "..%c0%af", "..%e0%80%af", "....//", "..;/", "%2e%2e%u2215", "..%00/"]


def traversal_paths():
    """Every route's variable part replaced by a climb out of the run, in each encoding; plus absolute paths."""
    paths = []
    for dots in TRAVERSAL_DOTS:
        for depth in (1, 2, 3, 6):
            for target in TRAVERSAL_TARGETS:
                climb = dots * depth + target
                paths += ["/models/0/" + climb, "/models/" + climb, "/models/0/model.onnx/" + climb, "/" + climb,
                          "/models/" + climb + "/model.onnx"]
    for absolute in ("/etc/passwd", "%2fetc%2fpasswd", "\\etc\\passwd", "C:\\Windows\\win.ini", "file:///etc/passwd"):
        paths += ["/models/0/" + absolute, "/models/" + absolute + "/model.onnx", "//" + absolute.lstrip("/")]
    for name in ("model.onnx%00.txt", "model.onnx\x00", "labels.txt%00", "card.json%2500", "..", ".", "",
                 "model.onnx/", "MODEL.ONNX", "model.onnx%20", "weights.pt", "lineage.sqlite"):
        paths.append("/models/0/" + name)
    return paths


def traversal_phase(server: HostServe, tally: Tally, forbidden):
    allowed = {}
    for name in ("model.onnx", "labels.txt", "card.json", "reference.npz", ""):  # "": the generation's listing
        status, answer = raw_request(server.port, "GET /models/0/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                     .format(name).encode())
        allowed[name] = answer.split(b"\r\n\r\n", 1)[1]
    for path in traversal_paths():
        request = b"GET " + path.encode("latin-1", "replace") + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        status, answer = raw_request(server.port, request)
        tally.count("traversal", status)
        if status is None or status >= 500:
            tally.fail("5xx" if status else "no answer", "GET {!r}: {!r}".format(path, answer[:200]))
        found = leaks(answer, forbidden)
        if found:
            tally.fail("leak", "GET {!r} leaked {}".format(path, found))
        if status == 200 and answer.split(b"\r\n\r\n", 1)[1] not in allowed.values():
            tally.fail("served outside the published files", "GET {!r}".format(path))


def oversized_phase(server: HostServe, tally: Tally):
    cases = [("1 GB declared, with the token", TOKEN, 413), ("1 GB declared, no token", None, 401)]
    for label, token, expected in cases:
        headers = "POST /reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n"
        if token:
            headers += "Authorization: Bearer {}\r\n".format(token)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall((headers + "\r\n").encode())
            answer = connection.recv(4096)  # no byte of the body was sent
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
        tally.count("oversized", status)
        if status != expected or time.monotonic() - started > 5:
            tally.fail("oversized not refused up front", "{}: {!r}".format(label, answer[:120]))
    # chunked, no Content-Length: refused as soon as it passes 64 KiB
    chunk = b"[" + b"1," * 8000 + b"1]"
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    request = ("POST /reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               "Authorization: Bearer {}\r\nConnection: close\r\n\r\n".format(TOKEN)).encode() + body
    status, answer = raw_request(server.port, request)
    tally.count("oversized", status)
    if status != 413:
        tally.fail("oversized not refused up front", "chunked 96 KiB: {!r}".format(answer[:120]))


# -- mutational fuzzing: valid reports changed a little, what a generator from the schema never makes -------
ODD_STRINGS = ["\ud800", "\udfff", "a\ud83d", "\u0000", "\u202e", "\ufeff", "\U0001f600", "x" * 5000, "", " ",
               "'; DROP TABLE device_reports; --", "../../etc/passwd", "%s%n", "\\", '"', "null", "\u00e9\u0301"]
ODD_NUMBERS = [0, -0.0, 1e308, -1e308, 5e-324, 2 ** 53 + 1, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -2 ** 63,
               10 ** 300, 10 ** 4000, 1.5, -1, 3.141592653589793]


def odd_value(rng: random.Random, depth: int = 0):
    """A JSON value of a random kind, leaning to the edges: odd strings and numbers, deep or wide containers."""
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(ODD_STRINGS)
    if kind == 1:
        return rng.choice(ODD_NUMBERS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3 and depth < 40:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == 4 and depth < 40:
        return {rng.choice(ODD_STRINGS + ["k"]): odd_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if kind == 5:  # nested near host-serve's limit of 32
        value = 1
        for _ in range(rng.randrange(25, 36)):
            value = [value] if rng.random() < 0.5 else {"n": value}
        return value
    if kind == 6:
        return "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 7:
        return [rng.random() for _ in range(rng.randrange(100, 2000))]
    return rng.choice(ODD_STRINGS)


def paths_of(value, prefix=()):
    """Every path (tuple of keys and indexes) into a JSON value, the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, prefix + (index,))


def mutate(base: dict, rng: random.Random) -> bytes:
    """One mutant of a valid report: a value replaced, a key added or removed (in the report or any object in
    it), a duplicated key, or the text itself cut, a byte flipped or an escape inserted."""
    report = json.loads(json.dumps(base))
    how = rng.randrange(7)
    paths = list(paths_of(report))[1:]
    if how <= 2 and paths:  # replace a value somewhere
        path = rng.choice(paths)
        holder = report
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = odd_value(rng)
    elif how == 3:  # add a key to an object somewhere
        objects = [report] + [v for v in (get_path(report, p) for p in paths) if isinstance(v, dict)]
        rng.choice(objects)[rng.choice(ODD_STRINGS + ["extra", "stats"])] = odd_value(rng)
    elif how == 4 and paths:  # remove a key
        path = rng.choice([p for p in paths if isinstance(p[-1], str)] or paths)
        holder = get_path(report, path[:-1])
        if isinstance(holder, dict):
            holder.pop(path[-1], None)
    text = json.dumps(report, ensure_ascii=rng.random() < 0.5)
    data = text.encode("utf-8", "surrogatepass")
    if how == 5 and data:  # byte-level: flip, cut, insert
        index = rng.randrange(len(data))
        choice = rng.randrange(3)
        if choice == 0:
            data = data[:index] + bytes([data[index] ^ (1 << rng.randrange(8))]) + data[index + 1:]
        elif choice == 1:
            data = data[:index]
        else:
            data = data[:index] + rng.choice([b"\\ud800", b"\xff", b"\x00", b"1e999", b"NaN", b"-"]) + data[index:]
    elif how == 6:  # a key given twice (JSON parsers keep the last): the second one odd
        key = rng.choice(["sequence", "device_id", "kind", "stats", "model_sha256", "spool_id"])
        data = data[:-1] + b", " + json.dumps(key).encode() + b": " + json.dumps(odd_value(rng)).encode() + b"}"
    return data


def get_path(value, path):
    for step in path:
        value = value[step]
    return value


def mutation_phase(server: HostServe, tally: Tally, sha256: str, count: int, seed, forbidden, log=print):
    """``count`` mutants of valid reports POSTed with the token; after each one stored, GET /reports must still
    answer 200 with JSON (the poison-report class: a report that is valid JSON but that no later read can
    serve); every page of GET /reports, /generations and /health at the end."""
    import requests
    rng = random.Random(seed if seed is not None else 18)
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + TOKEN
    base = {"schema": 1, "device_id": "mutant", "spool_id": "0123456789abcdef", "sequence": 1, "kind": "periodic",
            "created_at": 1.0, "model_sha256": sha256, "backend": "onnxruntime", "precision": "fp32",
            "platform": {"hostname": "jetson", "jetpack": "4.6.1"},
            "stats": {"frames": 10, "fps": 30.0, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": None},
                      "dropped": 0, "rss_mb": 50.0, "gpu_mem_mb": None}}
    started, stored = time.monotonic(), 0
    for number in range(count):
        valid = dict(base, sequence=number + 1, device_id="mutant-{}".format(number % 7))
        body = mutate(valid, rng)
        try:
            answer = session.post(server.url + "/reports", data=body, headers={"Content-Type": "application/json"},
                                  timeout=60)
        except requests.RequestException as error:
            tally.fail("no answer", "mutant {}: {!r}".format(body[:200], error))
            continue
        tally.count("mutated POST /reports", answer.status_code)
        if answer.status_code >= 500:
            tally.fail("5xx", "mutant {!r}: {}".format(body[:300], answer.text[:200]))
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if answer.status_code in (201, 409) and answer.json().get("stored") is True:
            stored += 1
            tally.accepted.append(report_identity(data))
            read = session.get(server.url + "/reports", params={"since_id": 0, "limit": 1, "device_id": "x"},
                               timeout=60)
            last = session.get(server.url + "/reports", params={"limit": 10000}, timeout=60)
            tally.count("GET /reports after a stored mutant", last.status_code)
            if read.status_code != 200 or last.status_code != 200:
                tally.fail("a stored report made GET /reports fail", "mutant {!r}: {} {}".format(
                    body[:300], last.status_code, last.text[:200]))
            else:
                try:
                    last.json()
                except ValueError as error:
                    tally.fail("GET /reports is not JSON after a stored mutant", "{!r}: {}".format(body[:300], error))
            found = leaks(last.content, forbidden)
            if found:
                tally.fail("leak", "GET /reports leaked {}".format(found))
    # at the end: every page, and the public routes
    url, pages = server.url + "/reports?limit=50", 0
    while url:
        answer = session.get(url, timeout=60)
        tally.count("GET /reports pages at the end", answer.status_code)
        if answer.status_code != 200:
            tally.fail("a stored report made GET /reports fail", "page {}: {}".format(url, answer.text[:200]))
            break
        answer.json()
        pages += 1
        link = answer.headers.get("link")
        url = server.url + link[1:link.index(">")] if link else None
    for path in ("/health", "/generations", "/models/0/model.onnx", "/models/0/card.json"):
        answer = session.get(server.url + path, timeout=60)
        tally.count("GET {} at the end".format(path), answer.status_code)
        if answer.status_code != 200:
            tally.fail("a stored report broke a public route", "{}: {}".format(path, answer.text[:200]))
    log("  mutated reports {:>6}, {} stored, {} pages of /reports at the end, {:.1f} s".format(
        count, stored, pages, time.monotonic() - started))


def report_identity(body: dict) -> tuple:
    """What host-serve identifies a report by: (device_id, spool_id or '', sequence)."""
    return body["device_id"], body.get("spool_id") or "", body["sequence"]


def stored_rows(run: Path):
    database = sqlite3.connect(str(run / "lineage.sqlite"))
    try:
        return database.execute("SELECT device_id, spool_id, sequence, body FROM device_reports").fetchall()
    finally:
        database.close()


def fuzz(examples: int = 1500, seed=None, log=print, mutants: int = 0) -> dict:
    """Run every phase against a fresh run folder; return the counts (and failures, empty when all held)."""
    import jsonschema_rs
    from host.serve.bodies import report_body_schema
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-host-serve-") as folder:
        folder = Path(folder)
        run = make_run(folder)
        forbidden = {"secret": SECRET.encode(), "token": TOKEN.encode(), "sqlite": b"SQLite format 3",
                     "passwd": b"root:x:0:0", "weights": b"weights-bait"}
        server = HostServe(run, folder / "token")
        tally = Tally()
        try:
            validator = jsonschema_rs.validator_for(report_body_schema())
            log("fuzz: schemathesis, {} examples per operation and mode ...".format(examples))
            schemathesis_phase(server, tally, examples, seed, forbidden, validator, log)
            log("fuzz: path traversal ...")
            traversal_phase(server, tally, forbidden)
            log("fuzz: oversized bodies ...")
            oversized_phase(server, tally)
            if mutants:
                log("fuzz: {} mutated reports ...".format(mutants))
                sha256 = json.loads((run / "gen-00" / "card.json").read_text())["sha256"]
                mutation_phase(server, tally, sha256, mutants, seed, forbidden, log)
        finally:
            output = server.stop()
        rows = stored_rows(run)
        accepted = collections.Counter(tally.accepted)
        kept = collections.Counter((device_id, spool_id, sequence) for device_id, spool_id, sequence, _ in rows)
        for device_id, spool_id, sequence, body in rows:
            data = json.loads(body)
            if kept[(device_id, spool_id, sequence)] > accepted[(device_id, spool_id, sequence)]:
                tally.fail("stored without a 201 (or a 409 that kept it)", "{} {} {}".format(device_id, spool_id,
                                                                                             sequence))
            if not (validator.is_valid(data) and finite_everywhere(data)):
                why = [str(error)[:150] for error in validator.iter_errors(data)][:2] or ["not finite"]
                tally.fail("stored an invalid report", "{}: {}".format(why, body))
        for key in sorted(accepted - kept)[:5]:
            tally.fail("201 but not stored", str(key))
        if "Traceback" in output:
            tally.fail("traceback in host-serve's output", output[-500:])
    five_xx = sum(count for key, count in tally.by_status.items() if key.endswith((" 500", " 502", " 503")) or
                  key.split()[-1].isdigit() and int(key.split()[-1]) >= 500)
    return {"requests": tally.requests, "five_xx": five_xx, "rows_stored": len(rows),
            "accepted_201": len(tally.accepted), "invalid_accepted": tally.invalid_accepted,
            "failures": tally.failure_counts(), "failure_examples": {k: [e for e in v if e][:5]
                                                                       for k, v in tally.failures.items()},
            "by_status": dict(sorted(tally.by_status.items())), "no_case_possible": tally.impossible,
            "schema_valid_but_refused": tally.refused_valid, "seconds": round(time.monotonic() - started, 1),
            "examples_per_operation": examples, "mutants": mutants, "seed": seed, "machine": describe_machine(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1500, help="examples per operation and mode")
    parser.add_argument("--mutants", type=int, default=2000,
                        help="mutated valid reports to POST after the generated ones (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized)")
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args(argv)
    counts = fuzz(args.examples, args.seed, mutants=args.mutants)
    for key, value in counts["by_status"].items():
        print("  {:<60} {:>6}".format(key, value))
    print("requests {requests} | 5xx {five_xx} | 201s {accepted_201} | rows stored {rows_stored} | invalid accepted "
          "{invalid_accepted} | {seconds} s".format(**counts))
    print("machine: {machine} | load average at the end {load_average_1m_at_end}".format(**counts))
    print("failures:", json.dumps(counts["failures"]) if counts["failures"] else "none")
    for kind, examples in counts["failure_examples"].items():
        for example in examples:
            print("  {}: {}".format(kind, example))
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=1) + "\n")
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
