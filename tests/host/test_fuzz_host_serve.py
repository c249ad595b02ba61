"""host-serve's API fuzzed from its own OpenAPI schema (bench/fuzz_host_serve.py with a few examples per
operation; the bench run sends over 10,000 requests): schemathesis' schema-valid and schema-breaking requests,
path traversal in every encoding and oversized bodies, against the real host-serve process on loopback.
No 5xx, nothing private served, no write without the token, every stored row valid and answered 201."""
import importlib

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")


def load_bench():
    return importlib.import_module("bench.fuzz_host_serve")  # bench/ is a namespace package beside tests/


def test_fuzzing_host_serve_finds_no_5xx_no_leak_and_no_bad_write():
    counts = load_bench().fuzz(examples=40, seed=None, log=lambda line: None)
    assert counts["failures"] == {}, counts["failure_examples"]
    assert counts["five_xx"] == 0 and counts["invalid_accepted"] == 0
    assert counts["requests"] >= 500
    assert counts["rows_stored"] == counts["accepted_201"] > 0  # valid reports did get through
    statuses = counts["by_status"]
    assert statuses.get("POST /reports without the token 401", 0) > 0
    assert not any(key.startswith("POST /reports without the token 20") for key in statuses)
    assert statuses.get("oversized 413", 0) == 2 and statuses.get("oversized 401", 0) == 1
