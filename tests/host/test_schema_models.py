"""host-serve's request models are generated from contract/report_schema.py: what the schema says, the model
checks; and what the generator cannot translate is refused when the model is made, never ignored."""
import pytest
from pydantic import ValidationError

from contract.report_schema import REPORT_SCHEMA, SCHEMA_VERSION
from host.serve.schema_models import SchemaNotSupported, model_from_schema

GOOD = {"schema": SCHEMA_VERSION, "device_id": "tx1-lab", "sequence": 1, "kind": "final", "created_at": 1.5,
        "model_sha256": "a" * 64, "backend": "onnxruntime", "precision": "fp32", "platform": {"python": "3.6"},
        "stats": {"frames": 3, "fps": 2, "latency_ms": {"p50": 1.0}, "temperature_c": 41}}


def test_a_report_the_schema_allows_is_read_with_its_extra_keys():
    report = model_from_schema(REPORT_SCHEMA).model_validate(GOOD)
    assert (report.schema_, report.kind, report.stats.fps, report.stats.latency_ms.p50) == (1, "final", 2.0, 1.0)
    assert report.stats.model_extra == {"temperature_c": 41}  # telemetry grows: extra keys kept


@pytest.mark.parametrize("change", [
    {"schema": SCHEMA_VERSION + 1}, {"schema": float(SCHEMA_VERSION)}, {"schema": True}, {"sequence": 0}, {"sequence": 2 ** 62}, {"sequence": "5"}, {"kind": "hourly"},
    {"device_id": "has space"}, {"model_sha256": "A" * 64}, {"backend": "x" * 65}, {"platform": []},
    {"stats": {"frames": 1}}, {"stats": {"frames": -1, "fps": 1}}, {"stats": {"frames": 1, "fps": True}},
    {"stats": {"frames": 1, "fps": 1, "dropped": -1}}, {"stats": {"frames": 1, "fps": 1, "latency_ms": 5}},
    {"created_at": None},
])
def test_what_the_schema_refuses_the_model_refuses(change):
    with pytest.raises(ValidationError):
        model_from_schema(REPORT_SCHEMA).model_validate(dict(GOOD, **change))


def test_every_required_key_is_required():
    model = model_from_schema(REPORT_SCHEMA)
    for key in REPORT_SCHEMA["required"]:
        with pytest.raises(ValidationError):
            model.model_validate({k: v for k, v in GOOD.items() if k != key})


@pytest.mark.parametrize("schema", [
    {"title": "T", "type": "object", "properties": {"x": {"type": "array"}}},
    {"title": "T", "type": "object", "properties": {"x": {"type": "string", "format": "date-time"}}},
    {"title": "T", "type": "object", "properties": {"x": {"$ref": "#/$defs/y"}}},
])
def test_an_untranslated_feature_is_refused_when_the_model_is_made(schema):
    with pytest.raises(SchemaNotSupported):
        model_from_schema(schema)


def test_an_optional_key_may_be_left_out_but_not_given_as_null_unless_its_schema_allows_null():
    """Found by trials/fuzz_host_serve.py's mutation phase: ``"spool_id": null`` was stored, though the
    published schema says a string (an optional field was read as Optional[str])."""
    model = model_from_schema(REPORT_SCHEMA)
    assert model.model_validate(GOOD).spool_id is None  # left out: fine
    assert model.model_validate(dict(GOOD, spool_id="0123456789abcdef")).spool_id == "0123456789abcdef"
    with pytest.raises(ValidationError):
        model.model_validate(dict(GOOD, spool_id=None))
    with_null = dict(GOOD, stats=dict(GOOD["stats"], rss_mb=None, latency_ms=None))  # "type": [..., "null"]
    assert model.model_validate(with_null).stats.rss_mb is None
