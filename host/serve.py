"""host-serve: hands a run's models to devices and collects their reports into the run's lineage.sqlite.

    host-serve --run RUN [--bind 127.0.0.1:8700] [--token-file F]

GET  /health                               liveness and what is served
GET  /generations                          the run's generations, with the fps devices measured
GET  /models/<generation>/model.onnx       the ONNX, header X-SHA256 (checked against the file before sending)
GET  /models/<generation>/labels.txt|card.json
POST /reports                              a device report (Authorization: Bearer <token>; JSON, <= 64 KiB)
GET  /reports[?generation=N]               the stored reports

Every write needs the token; reads do not (they serve what the run already publishes). Without
--token-file a random token is made and kept in RUN/host-serve.token (mode 600).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.reports import DEVICE_ID_PATTERN, MAX_REPORT_BYTES, REPORT_KINDS, SCHEMA_VERSION
from host.errors import HostError
from host.lineage import Lineage

DEFAULT_BIND = "127.0.0.1:8700"
TOKEN_FILE_NAME = "host-serve.token"
SERVED_FILES = {"model.onnx": "application/octet-stream", "labels.txt": "text/plain; charset=utf-8",
                "card.json": "application/json"}


# -- the report schema (mirrors device/reports.py) -----------------------------------------------
class Percentiles(BaseModel):
    p50: Optional[float] = None
    p95: Optional[float] = None
    p99: Optional[float] = None


class ReportStats(BaseModel):
    """The figures of a report; the --stats-json keys. Extra keys are kept (telemetry grows)."""
    model_config = ConfigDict(extra="allow")
    frames: int = Field(ge=0)
    fps: float = Field(ge=0)
    latency_ms: Optional[Percentiles] = None
    dropped: Optional[int] = Field(default=None, ge=0)
    rss_mb: Optional[float] = None
    gpu_mem_mb: Optional[float] = None


class DeviceReport(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_: int = Field(alias="schema")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    sequence: int = Field(ge=1, lt=2 ** 62)
    kind: Literal[REPORT_KINDS]  # type: ignore[valid-type]
    created_at: float
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    backend: str = Field(max_length=64)
    precision: str = Field(max_length=16)
    platform: dict[str, Any]
    stats: ReportStats


def load_token(token_file: str | None, run: Path, log=print) -> str:
    """The bearer token: the first line of ``token_file``, or a new one kept in RUN/host-serve.token."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as error:
            raise HostError(f"--token-file {token_file} cannot be read or is empty ({error}); "
                            f"put the token on its first line") from error
        if len(token) < 16:
            raise HostError(f"the token in {token_file} has {len(token)} characters; use at least 16 "
                            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return token
    path = run / TOKEN_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    log(f"host-serve: no --token-file; made a token in {path} (give it to devices as --token)")
    return token


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
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                self._checked[key] = digest.hexdigest()
            return self._checked[key]


def create_app(run: str | Path, token: str) -> FastAPI:
    """The host-serve application over the run folder ``run`` (needs RUN/lineage.sqlite)."""
    run = Path(run).resolve()
    database = run / "lineage.sqlite"
    if not database.exists():
        raise HostError(f"{run} is not a run folder: {database} is missing (make one with host-evolve --out {run})")
    lineage = Lineage(database)
    lock = threading.Lock()  # one writer connection shared by the request threads
    files = ModelFiles()
    app = FastAPI(title="squishednets host-serve", docs_url=None, redoc_url=None)
    app.state.lineage = lineage

    def generation_row(number: int) -> dict:
        with lock:
            row = lineage.generation(number)
        if row is None:
            raise HTTPException(404, f"generation {number} is not in this run")
        return row

    @app.get("/health")
    def health():
        with lock:
            count = len(lineage.generations())
        return {"status": "ok", "run": str(run), "generations": count}

    @app.get("/generations")
    def generations():
        with lock:
            rows, device_fps = lineage.generations(), lineage.device_fps()
        return [{"generation": r["generation"], "parent": r["parent"], "sha256": r["sha256"], "params": r["params"],
                 "size_bytes": r["size_bytes"], "macs": r["macs"], "top1": r["top1"], "top5": r["top5"],
                 "local_fps": r["local_fps"], "device_fps": device_fps.get(r["generation"]),
                 "model_url": f"/models/{r['generation']}/model.onnx"} for r in rows]

    @app.get("/models/{number}/{name}")
    def model_file(number: int, name: str):
        if name not in SERVED_FILES:
            raise HTTPException(404, f"{name} is not served; one of {', '.join(SERVED_FILES)}")
        row = generation_row(number)
        onnx_path = (run / row["onnx"]).resolve()
        path = onnx_path if name == "model.onnx" else onnx_path.parent / name
        if run not in path.parents or not path.is_file():
            raise HTTPException(404, f"{name} of generation {number} is missing from the run folder")
        headers = {}
        if name == "model.onnx":
            actual = files.sha256(path)
            if actual != row["sha256"]:
                raise HTTPException(500, f"{path} has sha256 {actual}, the lineage says {row['sha256']}: "
                                         f"the run folder was changed; re-export generation {number}")
            headers["X-SHA256"] = actual
        return FileResponse(path, media_type=SERVED_FILES[name], headers=headers)

    @app.post("/reports")
    async def post_report(request: Request):
        supplied = request.headers.get("authorization", "")
        if not (supplied.startswith("Bearer ") and hmac.compare_digest(supplied[7:].strip().encode(), token.encode())):
            return JSONResponse({"detail": "a report needs 'Authorization: Bearer <token>' with host-serve's token"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_REPORT_BYTES):
            return JSONResponse({"detail": f"a report is at most {MAX_REPORT_BYTES} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REPORT_BYTES:
                return JSONResponse({"detail": f"a report is at most {MAX_REPORT_BYTES} bytes"}, status_code=413)
        try:
            data = json.loads(bytes(body))
        except ValueError as error:
            return JSONResponse({"detail": f"the report is not JSON: {error}"}, status_code=400)
        try:
            report = DeviceReport.model_validate(data)
        except ValidationError as error:
            return JSONResponse({"detail": json.loads(error.json(include_url=False))}, status_code=422)
        if report.schema_ != SCHEMA_VERSION:
            return JSONResponse({"detail": f"report schema {report.schema_} is not {SCHEMA_VERSION}; "
                                           f"update device-serve or host-serve"}, status_code=422)
        # fps of a final or benchmark report is the device's measured figure; periodic ones stay in the body
        fps = report.stats.fps if report.kind in ("final", "benchmark") else None
        with lock:
            stored = lineage.add_device_report(report.device_id, report.sequence, report.model_sha256, report.kind,
                                               fps, data)
            generation = lineage.generation_by_sha256(report.model_sha256)
        return JSONResponse({"stored": stored, "duplicate": not stored,
                             "generation": generation["generation"] if generation else None},
                            status_code=201 if stored else 200)

    @app.get("/reports")
    def get_reports(generation: Optional[int] = None):
        with lock:
            return lineage.device_reports(generation)

    return app


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
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise HostError(f"--bind {text!r} is not [HOST:]PORT, e.g. 127.0.0.1:8700")
    return host, int(port)


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
        run = Path(args.run)
        host, port = parse_bind(args.bind)
        token = load_token(args.token_file, run) if run.is_dir() else ""
        app = create_app(run, token)
    except HostError as error:
        print(f"host-serve: error: {error}", file=sys.stderr)
        return 2
    import uvicorn
    print(f"host-serve: serving {run} on http://{host}:{port} ({'loopback only' if host in ('127.0.0.1', '::1', 'localhost') else 'reachable from the network'})",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
