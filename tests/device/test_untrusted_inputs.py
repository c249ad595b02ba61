"""The device facing what it cannot trust (issue 18): a model URL that streams without end, a /generations
answer that is not a list of generations, a token file others may read, a token on the command line, a model
file or --stats-json folder this user cannot use. Real loopback servers, real processes, files made here."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contract.errors import ContractError, DeviceError
from contract.tokens import read_private_token_file, token_from_argv
from device import agent_follow
from device.hidden_token import MOVED_ENV, TOKEN_ENV, move_token_off_the_command_line
from device.model_source import list_generations, resolve_model
from tests.device.test_serve import PROJECT, RunningServe, tiny_model  # noqa: F401 (a fixture)

SHA = "ab" * 32


class Answering(object):
    """A loopback HTTP server answering every GET with ``self.body`` (bytes, or a callable writing chunks)."""

    def __init__(self, body=b"[]", length=True):
        self.body, self.length, self.sent = body, length, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                if server.length:
                    self.send_header("Content-Length", str(len(server.body) if isinstance(server.body, bytes)
                                                           else 1 << 40))
                self.end_headers()
                try:
                    if isinstance(server.body, bytes):
                        self.wfile.write(server.body)
                    else:
                        while True:  # without end, until the client hangs up
                            self.wfile.write(b"\0" * 65536)
                            server.sent += 65536
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- a download without end ------------------------------------------------------------------------
@pytest.mark.parametrize("declared", [False, True])
def test_a_download_past_the_bound_is_refused_and_nothing_is_kept(tmp_path, declared):
    server = Answering(body="endless", length=declared)
    try:
        with pytest.raises(DeviceError, match="more than a model may be") as refused:
            resolve_model(server.url + "/models/0/model.onnx#sha256=" + SHA, cache_dir=str(tmp_path),
                          max_bytes=1 << 20)
    finally:
        server.close()
    assert [f for _, _, files in os.walk(str(tmp_path)) for f in files] == []
    # a Content-Length over the bound is refused from the header, before the body; else once past the bound
    assert ("sends {} bytes".format(1 << 40) if declared else "sends over") in str(refused.value)


# -- /generations answers that are not a list of generations ----------------------------------------
GARBAGE = {"null": b"null", "a number": b"42", "a string": b'"hello"', "an object": b'{"a": 1}',
           "deep nesting": b"[" * 100000 + b"]" * 100000, "not UTF-8": b"\xff\xfe[]",
           "entries that are not generations": json.dumps([1, None, {"generation": True, "sha256": SHA},
                                                           {"generation": 0, "sha256": "short"}]).encode()}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_garbage_listing_is_one_clear_error(case):
    server = Answering(GARBAGE[case])
    try:
        with pytest.raises(DeviceError, match="is it host-serve"):
            list_generations(server.url)
    finally:
        server.close()


def test_malformed_entries_are_skipped_and_the_good_ones_kept():
    listing = [{"generation": "one", "sha256": SHA}, {"generation": 1, "sha256": "cd" * 32},
               {"generation": 2, "sha256": SHA, "model_url": 5}, {"generation": 3, "sha256": SHA.upper()}]
    server = Answering(json.dumps(listing).encode())
    try:
        listed = list_generations(server.url)
    finally:
        server.close()
    assert [entry["generation"] for entry in listed] == [1]


def test_the_agent_keeps_following_through_garbage_answers(tmp_path):
    server = Answering(b"null")
    messages = []
    stop = threading.Event()

    def log(message):
        messages.append(message)
        if sum("cannot list generations" in m for m in messages) or len(messages) > 50:
            stop.set()  # it said so and backs off: that is all this test waits for
    agent = agent_follow.Agent(server.url, "x" * 20, device_id="jetson-g", backend="onnxruntime",
                               cache_dir=str(tmp_path / "cache"), log=log)
    try:
        assert agent.follow(interval_s=0.01, stop=stop) == 0
    finally:
        agent.close()
        server.close()
    assert any("did not answer a list of generations" in m for m in messages)


# -- token files and tokens on the command line ------------------------------------------------------
def token_file(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text("a-token-of-thirty-two-characters-x\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_a_token_file_others_can_read_is_refused_as_host_serve_refuses_it(tmp_path, mode):
    path = token_file(tmp_path, mode)
    with pytest.raises(ContractError, match="run chmod 600"):
        read_private_token_file(str(path))
    path.chmod(0o600)
    assert read_private_token_file(str(path)) == "a-token-of-thirty-two-characters-x"


@pytest.mark.parametrize("program", ["device.agent", "device.serve"])
def test_both_device_commands_refuse_an_exposed_token_file_in_one_line(tmp_path, program):
    path = token_file(tmp_path, 0o644)
    args = (["--follow", "http://127.0.0.1:9", "--once"] if program == "device.agent" else
            ["--model", "missing.onnx", "--source", "synthetic", "--report-to", "http://127.0.0.1:9"])
    done = subprocess.run([sys.executable, "-m", program] + args + ["--token-file", str(path)], cwd=PROJECT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "chmod 600" in done.stderr.strip().splitlines()[-1]


def test_a_token_is_taken_out_of_argv_in_both_spellings():
    assert token_from_argv(["--model", "m", "--token", "SECRET", "--frames", "3"]) == \
        ("SECRET", ["--model", "m", "--frames", "3"])
    assert token_from_argv(["--token=SECRET", "x"]) == ("SECRET", ["x"])
    assert token_from_argv(["--model", "m"]) == (None, ["--model", "m"])
    assert token_from_argv(["--token"]) == (None, ["--token"])  # argparse says what is missing


def test_the_program_starts_again_with_the_token_in_its_environment(tmp_path):
    calls = []
    move_token_off_the_command_line("device.serve", argv=["/nowhere/device-serve.py", "--token", "SECRET", "-x"],
                                    environ={"PATH": "/bin"}, execve=lambda *a: calls.append(a))
    ((program, argv, env),) = calls
    assert "SECRET" not in " ".join(argv) and argv[-3:] == ["-m", "device.serve", "-x"]
    assert env[TOKEN_ENV] == "SECRET" and env[MOVED_ENV] == "1" and env["PATH"] == "/bin"
    calls.clear()
    move_token_off_the_command_line("device.serve", argv=["device-serve", "-x"], environ={}, execve=calls.append)
    assert calls == []  # nothing to move: no second start


def test_device_serve_given_token_keeps_it_out_of_its_command_line(tiny_model, tmp_path):  # noqa: F811
    run, card = tiny_model
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--headless",
                         "--status-every", "0", "--report-to", "http://127.0.0.1:9", "--token", "THE-SECRET-TOKEN-0123",
                         "--spool-dir", tmp_path / "spool")
    try:
        serve.wait_for("moved off the command line")
        with open("/proc/{}/cmdline".format(serve.process.pid), "rb") as handle:
            cmdline = handle.read().decode()
    finally:
        serve.stop()
    assert "THE-SECRET-TOKEN" not in cmdline and "--report-to" in cmdline


# -- files this user cannot use ------------------------------------------------------------------------
class AnotherUser(object):
    """As root: this process's effective user is nobody inside the block (file checks as that user); as
    anyone else: nothing to change (the caller's chmods already bar this user)."""

    def __enter__(self):
        self.root = os.geteuid() == 0
        if self.root:
            os.setegid(65534)
            os.seteuid(65534)
        return self

    def __exit__(self, *exc):
        if self.root:
            os.seteuid(0)
            os.setegid(0)


@pytest.fixture()
def shared_tmp():
    """A folder other users can reach (pytest's own are private to their user)."""
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="squishednets-shared-")
    os.chmod(folder, 0o755)
    yield __import__("pathlib").Path(folder)
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder)


def test_a_model_this_user_cannot_read_and_a_stats_folder_it_cannot_write_are_one_line_each(tiny_model, shared_tmp,  # noqa: F811,E501
                                                                                               capsys):
    run, card = tiny_model
    tmp_path = shared_tmp
    model = tmp_path / "model.onnx"
    model.write_bytes((run / "gen-00" / "model.onnx").read_bytes())
    readable = tmp_path / "readable.onnx"
    readable.write_bytes(model.read_bytes())
    readable.chmod(0o644)
    model.chmod(0o600 if os.geteuid() == 0 else 0o000)  # as host-evolve leaves it, for another user
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    cases = [(["--model", str(model)], "cannot be read by this user"),
             (["--model", str(readable), "--stats-json", str(locked / "s.json")], "cannot be written by this user")]
    from device.serve import main
    try:
        for args, words in cases:
            with AnotherUser():
                status = main(["--source", "synthetic", "--headless", "--frames", "5"] + args)
            err = capsys.readouterr().err
            assert status == 2, err
            assert "Traceback" not in err and words in err.strip().splitlines()[-1]
    finally:
        model.chmod(0o600)
        locked.chmod(0o755)
