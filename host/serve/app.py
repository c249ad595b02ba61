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
GET  /latency-tables/requests              latency tables host-evolve asked devices for (token; host/serve/latency_tables.py)
POST /latency-tables/<request id>          a device's table for one (token; JSON, <= 8 MiB)

Public: what the run publishes anyway (the models, their cards and sha256, the fps measured). Behind the
token: every write, and the stored reports (device ids, hostnames, platform details). Without --token-file
a random token (``secrets``) is made and kept in RUN/host-serve.token (mode 600); a token file that other
users may read or write (any group/other permission bit) is refused, and so is an empty one.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from contract.generation_files import CHECKED_FILES, MODEL_ONNX, SERVED_FILES, generation_url_path
from contract.report_schema import MAX_REPORT_BYTES, MODEL_URL_KEY, SCHEMA_VERSION
from host.errors import HostError
from host.run.acceptance import counts_of, interval, run_best_generation
from host.serve.auth import authorized
from host.serve.bodies import (BODY_TIMEOUT_S, REPORT_REQUEST_BODY, BadBody, DeviceReport, _no_constant,
                               parse_json_body, read_bounded_body, validation_errors)
from host.serve.latency_tables import add_latency_table_routes
from host.serve.metrics import CONTENT_TYPE_LATEST, MeasuredRequests, ServeMetrics
from host.serve.pages import api_reference_html, index_html
from host.serve.served_run import MAX_GENERATION, ServedRun



MAX_REPORTS_PAGE = 10000
IN_MEMORY_BYTES = 64 * 1024 * 1024  # a checked file up to this size is read once and sent from memory
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
    served = ServedRun(run, read_only)
    if not token or not token.strip():
        raise HostError("host-serve needs a token: an empty one would let anyone write reports")
    app = FastAPI(title="squishednets host-serve", docs_url=None, redoc_url=None)  # /docs: our own page
    app.state.lineage = served.lineage
    app.state.read_only = served.read_only
    app.state.metrics = metrics = ServeMetrics(served)
    app.add_middleware(MeasuredRequests, metrics=metrics)
    add_public_routes(app, served)
    add_model_routes(app, served)
    # HEAD wherever GET reads something public (curl -I, wget --spider, a proxy's health check): the same
    # answer without its body; kept out of the OpenAPI document, where it would repeat each operation
    for route in list(app.routes):
        if getattr(route, "methods", None) == {"GET"} and route.include_in_schema:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)
    add_report_routes(app, served, token, body_timeout_s or BODY_TIMEOUT_S)
    add_latency_table_routes(app, served, token, body_timeout_s or BODY_TIMEOUT_S, unauthorized)
    return app


def add_public_routes(app: FastAPI, served: ServedRun) -> None:
    """/, /docs, /health, /generations: what the run publishes anyway (no token)."""
    # pages for people (not in the OpenAPI document: they are HTML renderings of what it describes)
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index(request: Request):
        reader = served.reader()
        best = run_best_generation(reader.generations(), reader.config())[0]  # the rows: with their genomes
        # the address as the browser reached it (what a device on the same network uses too)
        return HTMLResponse(index_html(served.root.name, generations(), best,
                                       address=str(request.base_url).rstrip("/")))

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    def docs():
        return HTMLResponse(api_reference_html(app.openapi()))

    @app.get("/metrics", summary="Prometheus text: requests, their latency, reports received, files served "
                                 "(no device names: public, as /generations)")
    def metrics():
        return Response(app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", summary="Liveness: {status: ok, generations: N}")
    def health():
        count = len(served.reader().generations())
        return {"status": "ok", "generations": count}  # public: no paths, no hostnames

    @app.get("/generations", summary="The run's generations: size, top-1, sha256, the fps devices measured "
                                     "(per device and kind of measurement), the model URL")
    def generations():
        reader = served.reader()
        device_fps, figures = served.device_figures(reader)
        return [{"generation": r["generation"], "parent": r["parent"], "sha256": r["sha256"], "params": r["params"],
                 "size_bytes": r["size_bytes"], "macs": r["macs"], "top1": r["top1"], "top5": r["top5"],
                 "local_fps": r["local_fps"], "device_fps": device_fps.get(r["generation"]),
                 "device_figures": figures.get(r["generation"], []), **validation_of(r),
                 MODEL_URL_KEY: generation_url_path(r["generation"])} for r in reader.generations()]


def validation_of(row: dict) -> dict:
    """A generation's validation figures for /generations: ``val_images`` and ``top1_interval`` (Wilson's 95 %,
    host/run/acceptance.py); {} for a run made before they were kept."""
    counts = counts_of(row)
    return {} if counts is None else {"val_images": counts[1], "top1_interval": list(interval(*counts))}


def add_model_routes(app: FastAPI, served: ServedRun) -> None:
    """GET /models/<generation>/ (what a generation holds) and /models/<generation>/<file> (a generation's
    files, each ONNX checked against its sha256 first)."""
    @app.get("/models/{generation}/", summary="What a generation holds: its files, their sizes and addresses")
    def generation_files(generation: str = PathParameter(max_length=40, description="a number, 'latest' or 'best'")):
        row = served.resolve_generation(generation)
        number, folder = row["generation"], (served.root / row["onnx"]).resolve().parent
        files = []
        for name in SERVED_FILES:
            path = (folder / name).resolve()
            if served.root in path.parents and path.is_file():
                files.append({"name": name, "bytes": path.stat().st_size, "url": generation_url_path(number, name)})
        return {"generation": number, "sha256": row["sha256"], "files": files}

    app.add_api_route("/models/{generation}", generation_files, methods=["GET"], include_in_schema=False)
    @app.get("/models/{generation}/{name}",
             summary=f"A generation's file ({', '.join(SERVED_FILES)})")
    def model_file(request: Request, generation: str = PathParameter(max_length=40,
                                                                     description="a number, 'latest' or 'best'"),
                   name: str = PathParameter()):
        if name not in SERVED_FILES:
            raise HTTPException(404, f"{name} is not served; one of {', '.join(SERVED_FILES)}")
        row = served.resolve_generation(generation)
        number = row["generation"]
        run = served.root
        onnx_path = run / row["onnx"]
        # every path resolved (symlinks followed) before the containment check: a link to outside is a 404
        path = (onnx_path if name == MODEL_ONNX else onnx_path.resolve().parent / name).resolve()
        if run not in path.parents or not path.is_file():
            raise HTTPException(404, f"{name} of generation {number} is missing from the run folder")
        # which generation an alias named, and its own address (a device caches and reports by it)
        headers = {"X-Generation": str(number), "Content-Location": f"/models/{number}/{name}"}
        data = None
        if name in CHECKED_FILES:
            try:
                if request.method == "GET" and path.stat().st_size <= IN_MEMORY_BYTES:
                    # read once: the bytes checked are the bytes sent (a file rewritten or cut mid-download
                    # can no longer send other bytes than its X-SHA256, or fewer than its Content-Length)
                    data = path.read_bytes()
                    actual = hashlib.sha256(data).hexdigest()
                else:
                    actual = served.files.sha256(path)
            except OSError as error:
                print(f"host-serve: cannot read {path} ({error})", file=sys.stderr, flush=True)
                raise HTTPException(503, f"generation {number}'s {name} cannot be read on the host now") from None
            expected = served.expected_sha256(row, onnx_path.resolve(), name)
            if actual != expected:
                if served.first_time_changed(path, actual):  # the path in host-serve's own log only, once
                    print(f"host-serve: {path} has sha256 {actual}, the run says {expected}: the run folder was "
                          f"changed; re-export generation {number}", file=sys.stderr, flush=True)
                raise HTTPException(503, f"generation {number}'s {name} on the host does not match its sha256 "
                                         f"in the run; it is not served until the host's operator restores it")
            headers["X-SHA256"] = actual
        if request.method == "GET":
            app.state.metrics.files.labels(name).inc()  # host_serve_model_files_total
        if data is not None:
            return Response(data, media_type=SERVED_FILES[name], headers=headers)
        return FileResponse(path, media_type=SERVED_FILES[name], headers=headers)


def unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "this needs 'Authorization: Bearer <token>' with host-serve's token"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def add_report_routes(app: FastAPI, served: ServedRun, token: str, body_timeout_s: float) -> None:
    """POST /reports (a device's report, stored in the run's lineage) and GET /reports (paged); both behind
    the token."""
    @app.post("/reports", openapi_extra=REPORT_REQUEST_BODY,
              summary="A device report (Authorization: Bearer <token>; JSON, at most 64 KiB)")
    async def post_report(request: Request):
        response, kind, outcome = await take_report(request)
        app.state.metrics.reports.labels(kind, outcome).inc()  # host_serve_reports_total
        return response

    async def take_report(request: Request) -> tuple:
        """(the answer, the report's kind or "unknown", the outcome: stored, duplicate, conflict, refused,
        unavailable)."""
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized(), "unknown", "unauthorized"
        try:
            data = parse_json_body(await read_bounded_body(request, MAX_REPORT_BYTES,
                                                           body_timeout_s))
        except BadBody as error:  # a body refused before its end (too large, too slow) also ends the connection:
            closing = {"Connection": "close"} if error.status in (408, 413) else {}  # its rest is never read
            return (JSONResponse({"detail": error.detail}, status_code=error.status, headers=closing), "unknown",
                    "refused")
        except ClientDisconnect:  # the device went away mid-body: it sends the report again; nothing to log
            return Response(status_code=400), "unknown", "disconnected"
        version = data.get("schema") if isinstance(data, dict) else None
        if type(version) is int and version != SCHEMA_VERSION:  # said before the field-by-field errors
            return (JSONResponse({"detail": f"report schema {version} is not {SCHEMA_VERSION}; "
                                            f"update device-serve or host-serve"}, status_code=422), "unknown",
                    "refused")
        try:
            report = DeviceReport.model_validate(data)
        except ValidationError as error:
            return JSONResponse({"detail": validation_errors(error)}, status_code=422), "unknown", "refused"
        # fps of a final or benchmark report is the device's measured figure; periodic ones stay in the body
        fps = report.stats.fps if report.kind in ("final", "benchmark") else None
        if served.lineage is None:
            return (JSONResponse({"detail": "this run is served read-only (its folder cannot be written): reports "
                                            "are not stored here; the device keeps them"},
                                 status_code=503, headers={"Retry-After": "300"}), report.kind, "unavailable")

        def store():  # on a worker thread: a writer waiting for SQLite's lock never blocks the event loop
            with served.write_lock:
                served.check_same_run()  # stored in the run's own database, or not answered as stored
                return (served.lineage.add_device_report(report.device_id, report.sequence, report.model_sha256,
                                                  report.kind, fps, data, spool_id=report.spool_id or ""),
                        served.lineage.generation_by_sha256(report.model_sha256))
        try:
            outcome, generation = await run_in_threadpool(store)
        except sqlite3.OperationalError as error:  # disk full, database locked past its timeout, I/O error
            return cannot_store(report.device_id, report.sequence, error), report.kind, "unavailable"
        except HTTPException as gone:  # the run was replaced or deleted while served
            return (JSONResponse({"detail": gone.detail}, status_code=gone.status_code, headers=gone.headers),
                    report.kind, "unavailable")
        answer = {"stored": outcome != "duplicate", "duplicate": outcome == "duplicate",
                  "generation": generation["generation"] if generation else None}
        if outcome == "conflict":  # kept beside the stored one, and said on both sides
            print(f"host-serve: report {report.sequence} of {report.device_id} (spool {report.spool_id or '-'}) "
                  f"differs from the one stored under that number: both kept (GET /reports: conflict > 0); "
                  f"a device id used by two devices?", file=sys.stderr, flush=True)
            answer.update(conflict=True, detail="another report is stored under this device_id, spool_id and "
                                                "sequence; this one was kept beside it")
            return JSONResponse(answer, status_code=409), report.kind, "conflict"
        if outcome == "stored" and report.kind in ("final", "benchmark"):
            served.redraw_soon()  # the run's summary.json and report.png show the new figure
        return JSONResponse(answer, status_code=201 if outcome == "stored" else 200), report.kind, outcome

    @app.get("/reports", summary="The stored reports, paged (Authorization: Bearer <token>: they name devices)")
    def get_reports(request: Request, generation: Optional[int] = Query(default=None, ge=0, le=MAX_GENERATION),
                    since_id: int = Query(default=0, ge=0, le=MAX_GENERATION),
                    limit: int = Query(default=DEFAULT_REPORTS_PAGE, ge=1, le=MAX_REPORTS_PAGE)):
        """One page of the stored reports, oldest first: those with ``id`` above ``since_id``, at most
        ``limit``. A full page carries ``Link: <...?since_id=LAST>; rel="next"``."""
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        rows = served.reader().device_report_rows(generation, since_id, limit)
        headers = {}
        if len(rows) == limit:
            query = f"since_id={rows[-1]['id']}&limit={limit}" + (
                f"&generation={generation}" if generation is not None else "")
            headers["Link"] = f'</reports?{query}>; rel="next"'
        return Response(reports_page(rows), media_type="application/json", headers=headers)


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
