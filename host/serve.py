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
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import ValidationError

from contract.address import parse_address
from contract.errors import ContractError
from contract.files import sha256_of_file
from contract.report_schema import MAX_REPORT_BYTES, MODEL_URL_KEY, REPORT_SCHEMA, SCHEMA_VERSION
from contract.tokens import read_token_file, token_file_exposed
from host.errors import HostError
from host.index_page import api_reference_html, index_html
from host.lineage import Lineage
from host.report import best_generation
from host.schema_models import model_from_schema

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
# bench/fuzz_host_serve.py checks every accepted body against that schema with a second validator
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
        return json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except BadBody:
        raise
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadBody(400, f"the body is not JSON: {str(error)[:200]}") from None


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
    """``run`` resolved, or HostError when it is not a run folder (no RUN/lineage.sqlite). Writes nothing."""
    run = Path(run).resolve()
    database = run / "lineage.sqlite"
    if not database.is_file():
        raise HostError(f"{run} is not a run folder: {database} is missing (make one with host-evolve --out {run})")
    try:  # read-only: a file that is not a run's database is refused before anything writes to it
        with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=30)) as connection:
            connection.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.Error as error:  # (a run host-evolve has just begun may have no tables yet: that is fine)
        raise HostError(f"{database} is not a run's SQLite database ({error}): give a folder made by host-evolve, "
                        f"or restore its lineage.sqlite") from None
    return run


def create_app(run: str | Path, token: str) -> FastAPI:
    """The host-serve application over the run folder ``run`` (needs RUN/lineage.sqlite)."""
    run = check_run_folder(run)
    if not token or not token.strip():
        raise HostError("host-serve needs a token: an empty one would let anyone write reports")
    lineage = Lineage(run / "lineage.sqlite")
    lock = threading.Lock()  # one writer connection shared by the request threads
    files = ModelFiles()
    app = FastAPI(title="squishednets host-serve", docs_url=None, redoc_url=None)  # /docs: our own page
    app.state.lineage = lineage

    def generation_row(number: int) -> dict:
        with lock:
            row = lineage.generation(number)
        if row is None:
            raise HTTPException(404, f"generation {number} is not in this run")
        return row

    def resolve_generation(text: str) -> dict:
        """A generation's row from a number, ``latest`` or ``best``; 404 (with what is allowed) otherwise."""
        if text in GENERATION_ALIASES:
            with lock:
                rows, floor = lineage.generations(), lineage.config().get("top1_floor")
            number = rows[-1]["generation"] if text == "latest" and rows else best_generation(rows, floor)
            if number is None:
                raise HTTPException(404, f"the run has no {text} generation yet")
            return generation_row(number)
        if not text.isdigit() or int(text) > MAX_GENERATION:
            raise HTTPException(404, f"generation {text[:40]!r} is not a generation: give a number, 'latest' or 'best'")
        return generation_row(int(text))

    # pages for people (not in the OpenAPI document: they are HTML renderings of what it describes)
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index():
        listed = generations()
        with lock:
            floor = lineage.config().get("top1_floor")
        return HTMLResponse(index_html(run.name, listed, best_generation(listed, floor)))

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    def docs():
        return HTMLResponse(api_reference_html(app.openapi()))

    @app.get("/health")
    def health():
        with lock:
            count = len(lineage.generations())
        return {"status": "ok", "generations": count}  # public: no paths, no hostnames

    @app.get("/generations")
    def generations():
        with lock:
            rows, device_fps, figures = lineage.generations(), lineage.device_fps(), lineage.device_figures()
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
        onnx_path = (run / row["onnx"]).resolve()
        path = onnx_path if name == "model.onnx" else onnx_path.parent / name
        if run not in path.parents or not path.is_file():
            raise HTTPException(404, f"{name} of generation {number} is missing from the run folder")
        # which generation an alias named, and its own address (a device caches and reports by it)
        headers = {"X-Generation": str(number), "Content-Location": f"/models/{number}/{name}"}
        if name.endswith(".onnx"):
            actual, expected = files.sha256(path), expected_sha256(row, onnx_path, name)
            if actual != expected:
                raise HTTPException(500, f"{path} has sha256 {actual}, the run says {expected}: "
                                         f"the run folder was changed; re-export generation {number}")
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

    @app.post("/reports", openapi_extra=REPORT_REQUEST_BODY)
    async def post_report(request: Request):
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        try:
            data = parse_json_body(await read_bounded_body(request, MAX_REPORT_BYTES))
        except BadBody as error:
            return JSONResponse({"detail": error.detail}, status_code=error.status)
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
        try:
            with lock:
                outcome = lineage.add_device_report(report.device_id, report.sequence, report.model_sha256,
                                                    report.kind, fps, data, spool_id=report.spool_id or "")
                generation = lineage.generation_by_sha256(report.model_sha256)
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

    @app.get("/reports")
    def get_reports(request: Request, generation: Optional[int] = Query(default=None, ge=0, le=MAX_GENERATION)):
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        with lock:
            return lineage.device_reports(generation)

    return app


# POST /reports reads its body itself (bounded, then parsed): this declares the body in the OpenAPI document
def report_body_schema() -> dict:
    """The JSON schema of POST /reports' body: contract/report_schema.py's, as it is (the model is made from it)."""
    return copy.deepcopy(REPORT_SCHEMA)


REPORT_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": report_body_schema()}}}}


async def read_bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused (BadBody 413) before reading when Content-Length says it is larger than ``limit``,
    and as soon as a chunked body passes ``limit``: nothing larger is ever held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadBody(413, f"a report is at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadBody(413, f"a report is at most {limit} bytes")
    return bytes(body)


def cannot_store(device_id: str, sequence: int, error: Exception) -> JSONResponse:
    """503 + Retry-After when the lineage cannot take a write (disk full, ...): the device keeps the report in
    its spool and sends it again, so nothing is lost; one line in host-serve's log, no traceback."""
    print(f"host-serve: could not store report {sequence} of {device_id} ({error}); the device will send it "
          f"again (free space in the run folder's disk)", file=sys.stderr, flush=True)
    return JSONResponse({"detail": f"host-serve cannot store reports now ({error}); send it again later"},
                        status_code=503, headers={"Retry-After": "10"})


def validation_errors(error: ValidationError) -> list:
    """pydantic's errors without the offending input (it may be large, or not encodable as UTF-8)."""
    return [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]


class BackgroundServer:
    """host-serve on a thread of this process (tests, notebooks): ``start()`` returns once it listens."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
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
    import uvicorn
    port = listening.getsockname()[1]
    scope = "loopback only" if ipaddress_is_loopback(host) else "reachable from the network"
    print(f"host-serve: serving {run} on http://{host}:{port} ({scope})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    return 0


if __name__ == "__main__":
    sys.exit(main())
