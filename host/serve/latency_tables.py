"""host-serve's latency-table exchange: host-evolve --latency-table device:ID asks, device-agent --follow measures.

GET  /latency-tables/requests        the tables host-evolve asked for: id, device_id, image_size, step, parent
                                     widths, answered (Authorization: Bearer <token>: they name devices)
POST /latency-tables/<request id>    a device's table for that request (the token; JSON, at most 8 MiB):
                                     checked whole (contract.latency_table.table_problem) and against the request
                                     (its device, input size, grid and widths) before it is stored

host-evolve writes the requests into the run's lineage.sqlite and waits there for the answer; the device
measures with device/layer_table.py (device-agent's own backend and precision).
"""
from __future__ import annotations

import sqlite3

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from contract import latency_table as lt
from host.serve.auth import authorized
from host.serve.bodies import BadBody, parse_json_body, read_bounded_body
from host.serve.served_run import ServedRun

MAX_TABLE_BYTES = 8 * 1024 * 1024  # a step-8 table of SqueezeNet v1.1 is about 0.4 MB of JSON


def mismatch(request: dict, table: dict) -> str | None:
    """Why ``table`` does not answer ``request`` (a phrase), or None."""
    problem = lt.table_problem(table)
    if problem:
        return f"the table is damaged: {problem}"
    if table.get("device_id") != request["device_id"]:
        return f"the table is from device {table.get('device_id')!r}; this request is for {request['device_id']!r}"
    for key in ("image_size", "step"):
        if int(table[key]) != int(request[key]):
            return f"the table's {key} is {table[key]}; the request asks {request[key]}"
    if table["parent"] != request["parent"]:
        return "the table was measured for other widths than the request's parent"
    return None


def add_latency_table_routes(app: FastAPI, served: ServedRun, token: str, body_timeout_s: float,
                             unauthorized) -> None:
    @app.get("/latency-tables/requests",
             summary="Latency tables host-evolve asked devices for (Authorization: Bearer <token>)")
    def requests(request: Request):
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        return [{k: r[k] for k in ("id", "device_id", "image_size", "step", "parent", "answered")}
                for r in served.reader().latency_table_requests()]

    @app.post("/latency-tables/{request_id}",
              summary="A device's latency table for a request (Authorization: Bearer <token>; JSON, <= 8 MiB)")
    async def post_table(request: Request, request_id: int = PathParameter(ge=1, le=2 ** 62)):
        if not authorized(request.headers.get("authorization", ""), token):
            return unauthorized()
        try:
            table = parse_json_body(await read_bounded_body(request, MAX_TABLE_BYTES, body_timeout_s))
        except BadBody as error:
            closing = {"Connection": "close"} if error.status in (408, 413) else {}
            return JSONResponse({"detail": error.detail}, status_code=error.status, headers=closing)
        except ClientDisconnect:
            return JSONResponse({"detail": "the body broke off"}, status_code=400)
        if not isinstance(table, dict) or table.get("format") != lt.FORMAT:
            return JSONResponse({"detail": f"not a latency table ({lt.FORMAT}): send device-bench --layer-table's "
                                           "JSON"}, status_code=422)
        asked = served.reader().latency_table_request(request_id)
        if asked is None:
            return JSONResponse({"detail": f"no latency table request {request_id} in this run"}, status_code=404)
        why = mismatch(asked, table)
        if why:
            return JSONResponse({"detail": why}, status_code=422)
        if served.lineage is None:
            return JSONResponse({"detail": "this run is served read-only: tables are not stored here"},
                                status_code=503, headers={"Retry-After": "300"})

        def store():
            with served.write_lock:
                served.check_same_run()
                served.lineage.add_latency_table(request_id, asked["device_id"], table)
        try:
            await run_in_threadpool(store)
        except sqlite3.OperationalError as error:
            return JSONResponse({"detail": f"the run's lineage cannot take the table now ({error})"},
                                status_code=503, headers={"Retry-After": "30"})
        except HTTPException as gone:
            return JSONResponse({"detail": gone.detail}, status_code=gone.status_code, headers=gone.headers)
        return JSONResponse({"stored": True, "request": request_id}, status_code=201)
