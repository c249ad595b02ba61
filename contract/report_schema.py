"""The report a device sends to host-serve: one definition, as a JSON Schema (draft 2020-12 subset).

The device builds reports to it (device/reports.py); host-serve generates its request models from it
(host/serve/app.py) and publishes it in its OpenAPI document, which the fuzzing trial checks bodies against.

    {"schema": 1, "device_id", "spool_id" (optional), "sequence", "kind": periodic|final|benchmark, "created_at" (unix s),
     "model_sha256", "backend", "precision", "platform": {...}, "stats": {frames, fps, latency_ms, ...}}

Numbers must be finite (JSON has no NaN or Infinity; a report that carried one would poison every later
read); extra keys in the report and its stats are kept, since telemetry grows.

A report is identified by (device_id, spool_id, sequence): ``spool_id`` is random, made with the device's spool
counter (device/reports.py), so a device id used again with a fresh spool never collides with its past
reports. Reports from devices that predate it have none (the host stores '').
"""

SCHEMA_VERSION = 1
REPORT_KINDS = ("periodic", "final", "benchmark")
MAX_REPORT_BYTES = 64 * 1024  # host-serve refuses larger bodies (413) before reading them
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
SPOOL_ID_SCHEMA_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # the device writes 16 hex digits
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_SEQUENCE = 2 ** 62  # exclusive; SQLite's INTEGER holds it with room
# host-serve's GET /generations: the one key of an entry that holds the model's URL (host/serve/app.py writes it,
# device/model_source.py and device/agent.py read it; two spellings once let the #sha256= check be skipped)
MODEL_URL_KEY = "model_url"

_PERCENTILES = {
    "type": "object",
    "properties": {"p50": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]},
                   "p99": {"type": ["number", "null"]}},
}

STATS_SCHEMA = {
    "type": "object",
    "additionalProperties": True,
    "required": ["frames", "fps"],
    "properties": {
        "frames": {"type": "integer", "minimum": 0},
        "fps": {"type": "number", "minimum": 0},
        "latency_ms": {"anyOf": [_PERCENTILES, {"type": "null"}]},
        "dropped": {"type": ["integer", "null"], "minimum": 0},
        "rss_mb": {"type": ["number", "null"]},
        "gpu_mem_mb": {"type": ["number", "null"]},
        # a benchmark's batch size: an integer, checked at the door ("batch": 8.0 was once filed as batch 1)
        "batch": {"type": "integer", "minimum": 1},
    },
}

REPORT_SCHEMA = {
    "title": "DeviceReport",
    "type": "object",
    "additionalProperties": True,
    "required": ["schema", "device_id", "sequence", "kind", "created_at", "model_sha256", "backend", "precision",
                 "platform", "stats"],
    "properties": {
        "schema": {"type": "integer", "const": SCHEMA_VERSION},
        "device_id": {"type": "string", "pattern": DEVICE_ID_PATTERN},
        "spool_id": {"type": "string", "pattern": SPOOL_ID_SCHEMA_PATTERN},
        "sequence": {"type": "integer", "minimum": 1, "exclusiveMaximum": MAX_SEQUENCE},
        "kind": {"type": "string", "enum": list(REPORT_KINDS)},
        "created_at": {"type": "number"},
        "model_sha256": {"type": "string", "pattern": SHA256_PATTERN},
        "backend": {"type": "string", "maxLength": 64},
        "precision": {"type": "string", "maxLength": 16},
        "platform": {"type": "object"},
        "stats": STATS_SCHEMA,
    },
}
