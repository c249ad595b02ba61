"""What host-serve reads from a request: a report's body, bounded in size and time before it is parsed, parsed
strictly (no NaN, no lone surrogates, no deep nesting), and the report model generated from the one schema
(contract/report_schema.py). Every refusal is a :class:`BadBody` with its HTTP status and a one-line detail."""
from __future__ import annotations

import asyncio
import copy
import json
import math
import re
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from contract.report_schema import REPORT_SCHEMA
from host.serve.schema_models import model_from_schema

MAX_JSON_DEPTH = 32  # a report nests 3 deep; json.loads would recurse (and fail) near 1000
BODY_TIMEOUT_S = 30.0  # a report's body must arrive within it (a slow client holds no worker)

# -- the report schema: generated from contract/report_schema.py, the one definition ----------------
# strict: JSON types as the published schema says them (no true for a number, no "5" for an integer);
# trials/fuzz_host_serve.py checks every accepted body against that schema with a second validator
DeviceReport = model_from_schema(REPORT_SCHEMA)


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


# POST /reports reads its body itself (bounded, then parsed): this declares the body in the OpenAPI document
def report_body_schema() -> dict:
    """The JSON schema of POST /reports' body: contract/report_schema.py's, as it is (the model is made from it)."""
    return copy.deepcopy(REPORT_SCHEMA)


REPORT_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": report_body_schema()}}}}


def validation_errors(error: ValidationError) -> list:
    """pydantic's errors without the offending input (it may be large, or not encodable as UTF-8)."""
    return [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
