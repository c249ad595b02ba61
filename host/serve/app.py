"""host-serve: hands a run's models to devices and collects their reports into the run's lineage.sqlite.

    host-serve --run RUN [--bind 127.0.0.1:8700] [--token-file F]

GET  /                                     the run's generations as a page for people (public)
GET  /docs                                 the API reference, from /openapi.json (public)
GET  /health                               liveness: {"status": "ok", "generations": N} (public)
GET  /generations                          the run's generations, with the fps devices measured (public)
GET  /models/<generation>/model.onnx       the ONNX, header X-SHA256 (checked against the file before sending)
GET  /models/<generation>/model-b1.onnx    its static-batch twin for jetson-inference (checked against card.json)
GET  /models/<generation>/labels.txt|card.json
     <generation>: a number, ``latest`` (the newest) or ``best`` (summary.json's best_generation); HEAD too
POST /reports                              a device report (Authorization: Bearer <token>; JSON, <= 64 KiB)
GET  /reports[?generation=N]               the stored reports (Authorization: Bearer <token>: they name devices)

Public: what the run publishes anyway (the models, their cards and sha256, the fps measured). Behind the
token: every write, and the stored reports (device ids, hostnames, platform details). Without --token-file
a random token (``secrets``) is made and kept in RUN/host-serve.token (mode 600); a token file that other
users may read or write (any group/other permission bit) is refused, and so is an empty one.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import hmac
import json
import math
import os
import re
import secrets
import socket
import sqlite3
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from contract.address import parse_address
from contract.errors import ContractError
from contract.files import sha256_of_file
from contract.report_schema import MAX_REPORT_BYTES, MODEL_URL_KEY, REPORT_SCHEMA, SCHEMA_VERSION
from contract.tokens import read_token_file, token_file_exposed
from host.errors import HostError
from host.serve.pages import api_reference_html, index_html
from host.run.lineage import Lineage
from host.run.acceptance import run_best_generation
from host.serve.schema_models import model_from_schema

DEFAULT_BIND = "127.0.0.1:8700"
TOKEN_FILE_NAME = "host-serve.token"
SERVED_FILES = {"model.onnx": "application/octet-stream", "model-b1.onnx": "application/octet-stream",
                "model.fp16.onnx": "application/octet-stream", "labels.txt": "text/plain; charset=utf-8",
                "card.json": "application/json"}
# the ONNX twins export_generation writes beside model.onnx: where card.json keeps each one's sha256
CARD_SHA256_KEYS = {"model-b1.onnx": "static_batch", "model.fp16.onnx": "fp16"}
GENERATION_ALIASES = ("latest", "best")
MAX_JSON_DEPTH = 32  # a report nests 3 deep; json.loads would recurse (and fail) near 1000
MAX_GENERATION = 2 ** 63 - 1  # SQLite's INTEGER: a larger number can name no generation


# -- the report schema: generated from contract/report_schema.py, the one definition ----------------
# strict: JSON types as the published schema says them (no true for a number, no "5" for an integer);
# trials/fuzz_host_serve.py checks every accepted body against that schema with a second validator
DeviceReport = model_from_schema(REPORT_SCHEMA)


def check_token_file_mode(path: Path) -> None:
    """Refuse a token file that users other than its owner may read or write (as ssh does for keys)."""
    mode = token_file_exposed(path)
    if mode is not None:
        raise HostError(f"token file {path} has mode {mode:o}: other users can read or change the token; "
                        f"run chmod 600 {path}")


def load_token(token_file: str | None, run: Path, log=print) -> str:
    """The bearer token: the first line of ``token_file``, or a new one kept in RUN/host-serve.token.

    Call it only for a folder that is a run (:func:`check_run_folder`): it may write the token file there.
    """
    path = Path(token_file) if token_file else run / TOKEN_FILE_NAME
    if token_file or path.exists():
        if path.exists() and not path.is_file():
            raise HostError(f"token file {path} is not a file: give a file whose first line is the token")
        try:
            check_token_file_mode(path)
            return read_token_file(path)
        except OSError as error:
            raise HostError(f"token file {path} cannot be read ({error}); put the token on its first line") from error
        except ContractError as error:
            raise HostError(str(error)) from error
    if not os.access(run, os.W_OK):
        raise HostError(f"the run folder {run} is read-only and holds no {TOKEN_FILE_NAME}: give --token-file F "
                        f"(a file of yours, mode 600, whose first line is the token)")
    token = secrets.token_urlsafe(32)
    descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    log(f"host-serve: no --token-file; made a token in {path} (give it to devices as --token)")
    return token


def authorized(header: str, token: str) -> bool:
    """Whether an Authorization header carries ``token`` (constant-time; never true for an empty token)."""
    scheme, _, supplied = header.partition(" ")
    supplied = supplied.strip()
    if scheme.lower() != "bearer" or not supplied or not token:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


# -- request bodies: bounded before they are parsed -------------------------------------------------
class BadBody(ValueError):
    """A request body refused before it reaches the schema: ``status`` (400, 413, 422) and ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deep ``body``'s arrays and objects nest, counted on the bytes (strings skipped), without parsing.

    An unterminated string leaves its brackets counted: that over-counts only bodies that are not JSON."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise BadBody(422, f"the number {text[:40]} is not finite; reports carry finite numbers only")
    return value


def _no_constant(name: str):
    raise BadBody(422, f"{name} is not a number JSON allows; reports carry finite numbers only")


def parse_json_body(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``body`` as JSON, or BadBody: nesting deeper than ``max_depth`` (checked first), not UTF-8 JSON (400),
    a non-finite number (NaN, Infinity, -Infinity, or one too large for a float such as 1e999: 422)."""
    depth = json_depth(body)
    if depth > max_depth:
        raise BadBody(422, f"the body nests {depth} levels deep; at most {max_depth}")
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except BadBody:
        raise
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadBody(400, f"the body is not JSON: {str(error)[:200]}") from None
    if b"\\u" in body or b"\\U" in body:  # an escape may spell half a surrogate pair, which is no text
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise BadBody(422, f"the body has a lone surrogate escape ({error.object[error.start:error.end]!r}): "
                               f"reports carry Unicode text only") from None
    return data


class ModelFiles:
    """Checks each served ONNX against the sha256 in the lineage once per file version (size, mtime)."""

    def __init__(self):
        self._checked: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._checked:
                self._checked[key] = sha256_of_file(path)
            return self._checked[key]


def check_run_folder(run: str | Path) -> Path:
    """``run`` resolved, or HostError when it is not a run folder (no RUN/lineage.sqlite). Writes nothing.
    A run on a read-only folder or mount is a run (:func:`run_is_read_only`: served read-only)."""
    run = Path(run).resolve()
    database = run / "lineage.sqlite"
    if not database.is_file():
        raise HostError(f"{run} is not a run folder: {database} is missing (make one with host-evolve --out {run})")
    if not os.access(database, os.R_OK):
        raise HostError(f"{database} cannot be read by this user: run host-serve as the run's owner, or let it "
                        f"read the folder (chmod -R a+rX {run})")
    read_only = run_is_read_only(run)
    options = "mode=ro&immutable=1" if read_only else "mode=ro"
    try:  # read-only: a file that is not a run's database is refused before anything writes to it
        with closing(sqlite3.connect(f"{database.as_uri()}?{options}", uri=True, timeout=30)) as connection:
            connection.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as error:  # (a run host-evolve has just begun may have no tables yet: fine)
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            raise HostError(f"{database} is locked by another process's write (a long transaction, a sqlite3 "
                            f"shell in BEGIN?); end it and start host-serve again") from None
        raise HostError(f"{database} is not a run's SQLite database ({error}): give a folder made by host-evolve, "
                        f"or restore its lineage.sqlite") from None
    return run


def run_is_read_only(run: Path) -> bool:
    """Whether the run's folder or its lineage.sqlite cannot be written by this process (a read-only mount,
    an archived run, another user's files): then it is served read-only, reports refused with a 503."""
    return not (os.access(run, os.W_OK) and os.access(run / "lineage.sqlite", os.W_OK))


class ThreadReaders(threading.local):
    """One read-only connection to lineage.sqlite per request thread: reads never wait for the writer."""

    def __init__(self, path: Path, immutable: bool):
        self.path, self.immutable, self.lineage = path, immutable, None

    def get(self) -> Lineage:
        if self.lineage is None:
            self.lineage = Lineage.reader(self.path, immutable=self.immutable)
        return self.lineage


MAX_REPORTS_PAGE = 10000
BODY_TIMEOUT_S = 30.0  # a report's body must arrive within it (a slow client holds no worker)
DEFAULT_REPORTS_PAGE = 1000


def reports_page(rows) -> bytes:
    """GET /reports' answer for ``rows``: each report as stored, its ``body`` the stored JSON text (never
    parsed and re-encoded, so every stored report is servable: ASCII, escapes kept). A body that is not
    strict JSON (written by hand into the database) is served as null with ``body_unreadable``."""
    parts = []
    for row in rows:
        fields = {key: row[key] for key in row.keys() if key != "body"}
        body = row["body"]
        try:
            json.loads(body, parse_constant=_no_constant)
            body.encode("ascii")
        except (ValueError, TypeError, BadBody, AttributeError):
            fields["body_unreadable"] = "the stored body is not strict ASCII JSON"
            body = "null"
        head = json.dumps(fields, ensure_ascii=True, allow_nan=False, default=str)
        parts.append(head[:-1] + (', "body": ' if fields else '"body": ') + body + "}")
    return ("[" + ",\n".join(parts) + "]").encode("ascii")


def create_app(run: str | Path, token: str, read_only: bool | None = None,
               body_timeout_s: float | None = None) -> FastAPI:
    """The host-serve application over the run folder ``run`` (needs RUN/lineage.sqlite). ``read_only``
    (default: whether the folder can be written): serve the models and stored reports, refuse new reports
    with a 503. Reads use their own read-only connections (WAL): they never wait for a writer.
    ``body_timeout_s``: how long a report's body may take to arrive (default BODY_TIMEOUT_S)."""
    run = check_run_folder(run)
    if not token or not token.strip():
        raise HostError("host-serve needs a token: an empty one would let anyone write reports")
    read_only = run_is_read_only(run) if read_only is None else read_only
    lineage = None if read_only else Lineage(run / "lineage.sqlite")
    readers = ThreadReaders(run / "lineage.sqlite", immutable=read_only)
    lock = threading.Lock()  # one writer connection shared by the request threads
    files = ModelFiles()
    said_changed: set = set()
    app = FastAPI(title="squishednets host-serve", docs_url=None, redoc_url=None)  # /docs: our own page
    app.state.lineage = lineage
    app.state.read_only = read_only

    figures_cache: dict = {"key": None, "value": None}
    figures_lock = threading.Lock()

    def device_figures_of(reader: Lineage) -> tuple:
        """(device_fps, device_figures), read from every stored report once per new report, not once per
        request: /generations and / are public, and with 20,000 reports a fresh read took 0.7 s of CPU, which
        anyone could ask for again and again."""
        key = tuple(reader.db.execute("SELECT max(id), count(*) FROM device_reports").fetchone())
        with figures_lock:
            if figures_cache["key"] != key:
                figures_cache["value"] = (reader.device_fps(), reader.device_figures())
                figures_cache["key"] = key
            return figures_cache["value"]

    def generation_row(number: int) -> dict:
        row = readers.get().generation(number)
        if row is None:
            raise HTTPException(404, f"generation {number} is not in this run")
        return row

    def resolve_generation(text: str) -> dict:
        """A generation's row from a number, ``latest`` or ``best``; 404 (with what is allowed) otherwise."""
        if text in GENERATION_ALIASES:
            reader = readers.get()
            rows, config = reader.generations(), reader.config()
            number = rows[-1]["generation"] if text == "latest" and rows else run_best_generation(rows, config)[0]
            if number is None:
                raise HTTPException(404, f"the run has no {text} generation yet")
            return generation_row(number)
        if not text.isdigit() or int(text) > MAX_GENERATION:
            raise HTTPException(404, f"generation {text[:40]!r} is not a generation: give a number, 'latest' or 'best'")
        return generation_row(int(text))

    # pages for people (not in the OpenAPI document: they are HTML renderings of what it describes)
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index(request: Request):
        listed = generations()
        reader = readers.get()
        best = run_best_generation(reader.generations(), reader.config())[0]  # the rows: with their genomes
        # the address as the browser reached it (what a device on the same network uses too)
        return HTMLResponse(index_html(run.name, listed, best,
                                       address=str(request.base_url).rstrip("/")))

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    def docs():
        return HTMLResponse(api_reference_html(app.openapi()))

    @app.get("/health", summary="Liveness: {status: ok, generations: N}")
    def health():
        count = len(readers.get().generations())
        return {"status": "ok", "generations": count}  # public: no paths, no hostnames

    @app.get("/generations", summary="The run's generations: size, top-1, sha256, the fps devices measured "
                                     "(per device and kind of measurement), the model URL")
    def generations():
        reader = readers.get()
        rows = reader.generations()
        device_fps, figures = device_figures_of(reader)
        return [{"generation": r["generation"], "parent": r["parent"], "sha256": r["sha256"], "params": r["params"],
                 "size_bytes": r["size_bytes"], "macs": r["macs"], "top1": r["top1"], "top5": r["top5"],
                 "local_fps": r["local_fps"], "device_fps": device_fps.get(r["generation"]),
                 "device_figures": figures.get(r["generation"], []),
                 MODEL_URL_KEY: f"/models/{r['generation']}/model.onnx"} for r in rows]

    def expected_sha256(row: dict, onnx_path: Path, name: str) -> str:
        """model.onnx: the lineage's sha256; a twin: the one card.json (written with it) records."""
        if name == "model.onnx":
            return row["sha256"]
        try:
            card = json.loads((onnx_path.parent / "card.json").read_text())
            return card[CARD_SHA256_KEYS[name]]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise HTTPException(404, f"{name} of generation {row['generation']} has no sha256 in its card.json: "
                                     f"re-export the generation") from None

    @app.get("/models/{generation}/{name}",
             summary="A generation's file (model.onnx, model-b1.onnx, labels.txt, card.json)")
    def model_file(generation: str = PathParameter(max_length=40,
                                                   description="a number, 'latest' or 'best'"),
                   name: str = PathParameter()):
        if name not in SERVED_FILES:
            raise HTTPException(404, f"{name} is not served; one of {', '.join(SERVED_FILES)}")
        row = resolve_generation(generation)
        number = row["generation"]
        onnx_path = run / row["onnx"]
        # every path resolved (symlinks followed) before the containment check: a link to outside is a 404
        path = (onnx_path if name == "model.onnx" else onnx_path.resolve().parent / name).resolve()
        if run not in path.parents or not path.is_file():
            raise HTTPException(404, f"{name} of generation {number} is missing from the run folder")
        # which generation an alias named, and its own address (a device caches and reports by it)
        headers = {"X-Generation": str(number), "Content-Location": f"/models/{number}/{name}"}
        if name.endswith(".onnx"):
            try:
                actual = files.sha256(path)
            except OSError as error:
                print(f"host-serve: cannot read {path} ({error})", file=sys.stderr, flush=True)
                raise HTTPException(503, f"generation {number}'s {name} cannot be read on the host now") from None
            expected = expected_sha256(row, onnx_path.resolve(), name)
            if actual != expected:
                if (path, actual) not in said_changed:  # the path in host-serve's own log only, once
                    said_changed.add((path, actual))
                    print(f"host-serve: {path} has sha256 {actual}, the run says {expected}: the run folder was "
                          f"changed; re-export generation {number}", file=sys.stderr, flush=True)
                raise HTTPException(503, f"generation {number}'s {name} on the host does not match its sha256 "
                                         f"in the run; it is not served until the host's operator restores it")
            headers["X-SHA256"] = actual
        return FileResponse(path, media_type=SERVED_FILES[name], headers=headers)

    # HEAD wherever GET reads something public (curl -I, wget --spider, a proxy's health check): the same
    # answer without its body; kept out of the OpenAPI document, where it would repeat each operation
    for route in list(app.routes):
        if getattr(route, "methods", None) == {"GET"} and route.include_in_schema:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)

    def unauthorized() -> JSONResponse:
        return JSONResponse({"detail": "this needs 'Authorization: Bearer <token>' with host-serve's token"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.post("/reports", openapi_extra=REPORT_REQUEST_BODY,
              summary="A device report (Authorization: Bearer <token>; JSON, at most 64 KiB)")
    async def post_report(request: Request):
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        try:
            data = parse_json_body(await read_bounded_body(request, MAX_REPORT_BYTES,
                                                           body_timeout_s or BODY_TIMEOUT_S))
        except BadBody as error:  # a body refused before its end (too large, too slow) also ends the connection:
            closing = {"Connection": "close"} if error.status in (408, 413) else {}  # its rest is never read
            return JSONResponse({"detail": error.detail}, status_code=error.status, headers=closing)
        except ClientDisconnect:  # the device went away mid-body: it sends the report again; nothing to log
            return Response(status_code=400)
        version = data.get("schema") if isinstance(data, dict) else None
        if type(version) is int and version != SCHEMA_VERSION:  # said before the field-by-field errors
            return JSONResponse({"detail": f"report schema {version} is not {SCHEMA_VERSION}; "
                                           f"update device-serve or host-serve"}, status_code=422)
        try:
            report = DeviceReport.model_validate(data)
        except ValidationError as error:
            return JSONResponse({"detail": validation_errors(error)}, status_code=422)
        # fps of a final or benchmark report is the device's measured figure; periodic ones stay in the body
        fps = report.stats.fps if report.kind in ("final", "benchmark") else None
        if lineage is None:
            return JSONResponse({"detail": "this run is served read-only (its folder cannot be written): reports "
                                           "are not stored here; the device keeps them"},
                                status_code=503, headers={"Retry-After": "300"})

        def store():  # on a worker thread: a writer waiting for SQLite's lock never blocks the event loop
            with lock:
                return (lineage.add_device_report(report.device_id, report.sequence, report.model_sha256,
                                                  report.kind, fps, data, spool_id=report.spool_id or ""),
                        lineage.generation_by_sha256(report.model_sha256))
        try:
            outcome, generation = await run_in_threadpool(store)
        except sqlite3.OperationalError as error:  # disk full, database locked past its timeout, I/O error
            return cannot_store(report.device_id, report.sequence, error)
        answer = {"stored": outcome != "duplicate", "duplicate": outcome == "duplicate",
                  "generation": generation["generation"] if generation else None}
        if outcome == "conflict":  # kept beside the stored one, and said on both sides
            print(f"host-serve: report {report.sequence} of {report.device_id} (spool {report.spool_id or '-'}) "
                  f"differs from the one stored under that number: both kept (GET /reports: conflict > 0); "
                  f"a device id used by two devices?", file=sys.stderr, flush=True)
            answer.update(conflict=True, detail="another report is stored under this device_id, spool_id and "
                                                "sequence; this one was kept beside it")
            return JSONResponse(answer, status_code=409)
        return JSONResponse(answer, status_code=201 if outcome == "stored" else 200)

    @app.get("/reports", summary="The stored reports, paged (Authorization: Bearer <token>: they name devices)")
    def get_reports(request: Request, generation: Optional[int] = Query(default=None, ge=0, le=MAX_GENERATION),
                    since_id: int = Query(default=0, ge=0, le=MAX_GENERATION),
                    limit: int = Query(default=DEFAULT_REPORTS_PAGE, ge=1, le=MAX_REPORTS_PAGE)):
        """One page of the stored reports, oldest first: those with ``id`` above ``since_id``, at most
        ``limit``. A full page carries ``Link: <...?since_id=LAST>; rel="next"``."""
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        rows = readers.get().device_report_rows(generation, since_id, limit)
        headers = {}
        if len(rows) == limit:
            query = f"since_id={rows[-1]['id']}&limit={limit}" + (
                f"&generation={generation}" if generation is not None else "")
            headers["Link"] = f'</reports?{query}>; rel="next"'
        return Response(reports_page(rows), media_type="application/json", headers=headers)

    return app


# POST /reports reads its body itself (bounded, then parsed): this declares the body in the OpenAPI document
def report_body_schema() -> dict:
    """The JSON schema of POST /reports' body: contract/report_schema.py's, as it is (the model is made from it)."""
    return copy.deepcopy(REPORT_SCHEMA)


REPORT_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": report_body_schema()}}}}


async def read_bounded_body(request: Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The body, refused (BadBody 413) before reading when Content-Length says it is larger than ``limit``,
    and as soon as a chunked body passes ``limit``: nothing larger is ever held in memory. A body that has
    not arrived whole within ``timeout_s`` is refused (BadBody 408): a slow client holds no worker for ever."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadBody(413, f"a report is at most {limit} bytes")
    body = bytearray()

    async def read():
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise BadBody(413, f"a report is at most {limit} bytes")
    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise BadBody(408, f"the body did not arrive within {timeout_s:g} s") from None
    return bytes(body)


def cannot_store(device_id: str, sequence: int, error: Exception) -> JSONResponse:
    """503 + Retry-After when the lineage cannot take a write (disk full, locked by another process, ...): the
    device keeps the report in its spool and sends it again, so nothing is lost; one line in host-serve's
    log naming the cause and its fix, no traceback."""
    text = str(error)
    if "locked" in text or "busy" in text:
        fix = ("another process holds lineage.sqlite's write lock (a long transaction, a sqlite3 shell left in "
               "BEGIN, a maintenance tool): end it")
    elif "full" in text:
        fix = "free space on the run folder's disk"
    elif "readonly" in text or "read-only" in text:
        fix = "the run folder became read-only: make it writable, or restart host-serve to serve it read-only"
    else:
        fix = "check the run folder's disk"
    print(f"host-serve: could not store report {sequence} of {device_id} ({text}); the device will send it "
          f"again ({fix})", file=sys.stderr, flush=True)
    return JSONResponse({"detail": f"host-serve cannot store reports now ({text}); send it again later"},
                        status_code=503, headers={"Retry-After": "10"})


def validation_errors(error: ValidationError) -> list:
    """pydantic's errors without the offending input (it may be large, or not encodable as UTF-8)."""
    return [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]


class BackgroundServer:
    """host-serve on a thread of this process (tests, notebooks): ``start()`` returns once it listens."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, guard=None):
        import uvicorn
        self.server = uvicorn.Server(server_config(app, guard, host=host, port=port, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="host-serve", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        import time
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HostError("host-serve did not start (is the port in use?)")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def server_config(app: FastAPI, guard=None, **options):
    """uvicorn's Config for host-serve: the h11 protocol with a header timeout and a connection limit
    (host/serve/guard.py), idle keep-alive connections closed after a few seconds, a bounded log."""
    import uvicorn
    from host.serve.guard import ACCEPT_BURST, KEEP_ALIVE_TIMEOUT_S, ConnectionGuard, install_bounded_logging
    install_bounded_logging()
    guard = guard or ConnectionGuard()
    return uvicorn.Config(app, http=guard.protocol(), ws="none", log_level="warning",
                          timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S, backlog=ACCEPT_BURST, **options)


class _Terminated(BaseException):
    """SIGTERM, raised once uvicorn has finished its graceful shutdown and handed the signal back."""


def parse_bind(text: str) -> tuple[str, int]:
    """``--bind [HOST:]PORT`` (a bare port binds to loopback)."""
    try:
        return parse_address(text, flag="--bind")
    except ContractError as error:
        raise HostError(str(error)) from error


def ipaddress_is_loopback(host: str) -> bool:
    import ipaddress
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int, text: str) -> socket.socket:
    """A listening socket on (host, port), or HostError naming the address (in use, not this machine's, ...)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:  # gaierror, EADDRINUSE, EADDRNOTAVAIL, EACCES
        raise HostError(f"--bind {text}: cannot listen there ({error.strerror or error}); pick a free port or an "
                        f"address of this machine, e.g. --bind 127.0.0.1:8701") from None
    return listening


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="host-serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run folder (RUN with lineage.sqlite and gen-XX/)")
    parser.add_argument("--bind", default=DEFAULT_BIND,
                        help="[HOST:]PORT to listen on (default %(default)s: loopback only; 0.0.0.0:8700 to "
                             "let devices on the network in)")
    parser.add_argument("--token-file", help="file whose first line is the bearer token devices must send")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        host, port = parse_bind(args.bind)
        run = check_run_folder(args.run)  # before anything is written into it
        token = load_token(args.token_file, run)
        app = create_app(run, token)
        listening = bind_socket(host, port, args.bind)
    except HostError as error:
        print(f"host-serve: error: {error}", file=sys.stderr)
        return 2
    import signal
    import uvicorn
    port = listening.getsockname()[1]
    scope = "loopback only" if ipaddress_is_loopback(host) else "reachable from the network"
    mode = "; read-only: reports are not stored" if app.state.read_only else ""
    print(f"host-serve: serving {run} on http://{host}:{port} ({scope}{mode})", flush=True)

    def terminated(signum, frame):
        raise _Terminated()
    # uvicorn catches SIGINT and SIGTERM, shuts down gracefully, then raises the signal again to the handler
    # that was there before it: a KeyboardInterrupt or _Terminated here, after a clean stop
    signal.signal(signal.SIGTERM, terminated)
    try:
        uvicorn.Server(server_config(app)).run(sockets=[listening])
    except (KeyboardInterrupt, _Terminated):
        pass
    print("host-serve: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
