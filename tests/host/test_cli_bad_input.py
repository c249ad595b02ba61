"""host-serve fed bad input as a new user would (trials/fuzz_cli.py's host-serve cases, every test run): a
missing, foreign or broken run, bad --bind values, missing, empty, exposed or short token files, unknown
flags. Each is a real process answering exit status 2 with one line naming host-serve, and no traceback."""
import importlib

import pytest


@pytest.fixture(scope="module")
def fuzz_cli():
    return importlib.import_module("trials.fuzz_cli")  # trials/ is a namespace package beside tests/


def test_every_host_serve_case_is_one_line_and_exit_2(fuzz_cli):
    summary = fuzz_cli.fuzz(only={"host-serve"}, timeout=60, log=lambda line: None)
    assert summary["cases"] >= 13
    broken = ["{case}: {problems} ({line})".format(**r) for r in summary["results"] if r["problems"]]
    assert not broken, "\n".join(broken)


def test_the_judge_catches_a_traceback_and_a_chatty_error(fuzz_cli):
    assert fuzz_cli.judge("host-serve", 2, "", "host-serve: error: x is missing\n") == []
    assert fuzz_cli.judge("host-serve", 2, "", "usage: host-serve [-h]\n       [--bind B]\nhost-serve: error: bad\n") == []
    assert "traceback" in fuzz_cli.judge("host-serve", 1, "", "Traceback (most recent call last):\n  x\nValueError\n")
    assert fuzz_cli.judge("host-serve", 2, "", "host-serve: error: a\nhost-serve: error: b\n") == [
        "2 lines on stderr, not 1"]
    assert fuzz_cli.judge("host-serve", None, "", "") == ["not refused: still running at the time limit"]
