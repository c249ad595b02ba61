"""host-serve's API fuzzed from its own OpenAPI schema (trials/fuzz_host_serve.py with a few examples per
operation; the trial sends over 10,000 requests): schemathesis' schema-valid and schema-breaking requests,
path traversal in every encoding, oversized bodies and mutated valid reports, against the real host-serve
process on loopback. No 5xx, nothing private served, no write without the token, every stored row valid and
answered 201 (or 409: a conflict kept), and every stored report still servable by GET /reports."""
import importlib

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")


def load_bench():
    return importlib.import_module("trials.fuzz_host_serve")  # trials/ is a namespace package beside tests/


def test_fuzzing_host_serve_finds_no_5xx_no_leak_and_no_bad_write():
    counts = load_bench().fuzz(examples=40, seed=None, log=lambda line: None, mutants=120)
    assert counts["failures"] == {}, counts["failure_examples"]
    assert counts["five_xx"] == 0 and counts["invalid_accepted"] == 0
    assert counts["requests"] >= 500
    assert counts["rows_stored"] == counts["accepted_201"] > 0  # valid reports did get through
    statuses = counts["by_status"]
    assert statuses.get("POST /reports without the token 401", 0) > 0
    assert not any(key.startswith("POST /reports without the token 20") for key in statuses)
    assert statuses.get("oversized 413", 0) == 2 and statuses.get("oversized 401", 0) == 1
    mutated = {key: n for key, n in statuses.items() if key.startswith("mutated POST /reports")}
    assert sum(mutated.values()) == 120 and not any(key.endswith(" 500") for key in mutated)
    assert statuses.get("GET /reports after a stored mutant 200", 0) > 0  # some mutants were stored, and served


def test_a_mutant_changes_a_valid_report_and_stays_reproducible():
    import json
    import random
    trial = load_bench()
    base = {"schema": 1, "device_id": "d", "sequence": 1, "stats": {"frames": 1, "fps": 1.0}}
    first = [trial.mutate(base, random.Random(5)) for _ in range(1)] + [trial.mutate(base, random.Random(6))]
    again = [trial.mutate(base, random.Random(5)), trial.mutate(base, random.Random(6))]
    assert first == again  # a seed gives the same mutants: a failure found is a failure that can be rerun
    mutants = [trial.mutate(base, random.Random(seed)) for seed in range(200)]
    assert all(m != json.dumps(base).encode() for m in mutants[:50]) or len(set(mutants)) > 150
    assert any(b"\\ud800" in m or b"\\udfff" in m for m in mutants)  # lone surrogates, the last poison class
