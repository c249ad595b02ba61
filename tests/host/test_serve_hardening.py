"""host-serve under bad input (issue 11 items 3, 4, 9, 13): non-finite numbers, empty or exposed tokens,
numbers too large for SQLite, deep nesting and oversized bodies are refused at the door with a 4xx, nothing
is stored from them, and the run keeps answering. A real server on loopback over a real run folder."""
import json
import os
import socket
import stat

import pytest

httpx = pytest.importorskip("httpx")

from host.errors import HostError  # noqa: E402
from host.run.lineage import Lineage  # noqa: E402
from host.serve.app import create_app  # noqa: E402
from host.serve.auth import TOKEN_FILE_NAME, authorized, load_token  # noqa: E402
from host.serve.bodies import BadBody, json_depth, parse_json_body  # noqa: E402
from host.serve.server import DEFAULT_BIND, BackgroundServer, bind_socket, get_args_parser, main, parse_bind  # noqa: E402
from tests.host.test_serve import TOKEN, make_tiny_run, report  # noqa: E402
from tests.tiny_run import served_tiny_run  # noqa: E402

AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_tiny_run(tmp_path_factory.mktemp("hardened-run"), TOKEN) as served:
        yield served


def row_count(run):
    lineage = Lineage(run / "lineage.sqlite")
    try:
        return len(lineage.device_reports())
    finally:
        lineage.close()


# -- item 3: non-finite numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize("field, literal", [("fps", "NaN"), ("fps", "Infinity"), ("fps", "-Infinity"),
                                            ("fps", "1e999"), ("created_at", "NaN"), ("created_at", "-1e400"),
                                            ("rss_mb", "Infinity"), ("extra", "NaN")])
def test_a_non_finite_number_is_refused_and_the_run_keeps_answering(served, field, literal):
    server, run, card = served
    body = report(card, 1, kind="final", device_id="dev-nan")
    marker = "__NONFINITE__"
    if field == "created_at":
        body["created_at"] = marker
    elif field == "extra":
        body["stats"]["temperature_c"] = {"gpu": marker}  # an extra key: kept, so it must be finite too
    else:
        body["stats"][field] = marker
    text = json.dumps(body).replace('"{}"'.format(marker), literal)
    before = row_count(run)
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/reports", content=text, headers=AUTH)
        assert answer.status_code == 422, answer.text
        assert "finite" in answer.json()["detail"]
        assert client.get("/generations").status_code == 200
        assert client.get("/reports", headers=AUTH).status_code == 200
    assert row_count(run) == before


def test_parse_json_body_refuses_every_non_finite_spelling():
    for text in (b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e309", b'{"a": [1, -1E+999]}'):
        with pytest.raises(BadBody) as refused:
            parse_json_body(text)
        assert refused.value.status == 422
    assert parse_json_body(b'{"a": [1.5, -2e300, 0]}') == {"a": [1.5, -2e300, 0]}
    with pytest.raises(BadBody) as refused:
        parse_json_body(b"\xff{")
    assert refused.value.status == 400


# -- item 9: 4xx, not 5xx ---------------------------------------------------------------------------------
def test_numbers_sqlite_cannot_hold_and_deep_nesting_get_a_4xx(served):
    server, run, card = served
    before = row_count(run)
    with httpx.Client(base_url=server.url) as client:
        for path in ("/models/99999999999999999999/model.onnx", "/models/-1/model.onnx",
                     "/models/9223372036854775808/labels.txt"):
            assert 400 <= client.get(path).status_code < 500, path
        for value in ("1e23", "99999999999999999999", "-5", "nan"):
            answer = client.get("/reports", params={"generation": value}, headers=AUTH)
            assert 400 <= answer.status_code < 500, value
        for deep in (b"[" * 30000 + b"]" * 30000, b'{"a":' * 10000 + b"1" + b"}" * 10000):
            answer = client.post("/reports", content=deep, headers=AUTH)
            assert answer.status_code == 422 and "nests" in answer.json()["detail"]
        nested = report(card, 1, device_id="dev-deep")
        nested["platform"]["x"] = json.loads("[" * 40 + "]" * 40)
        assert client.post("/reports", json=nested, headers=AUTH).status_code == 422
        assert client.get("/health").status_code == 200
    assert row_count(run) == before


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b"{}") == 1 and json_depth(b"1") == 0
    assert json_depth(b'{"a": [{"b": "[[[[\\"[[["}]}') == 3
    assert json_depth(b"[" * 5000) == 5000


def test_an_oversized_body_is_refused_before_it_is_sent(served):
    server, _, _ = served
    host, port = server.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=120) as connection:  # a bound, not a speed
        connection.sendall("POST /reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n"
                           "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
                           .format(TOKEN).encode())
        answer = connection.recv(4096)  # not one byte of the gigabyte was sent: an answer at all is the proof
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# -- item 4 and 13: tokens --------------------------------------------------------------------------------
def test_authorized_never_matches_an_empty_token():
    assert authorized("Bearer " + TOKEN, TOKEN)
    assert authorized("bearer  " + TOKEN + " ", TOKEN)
    assert not authorized("Bearer ", "")
    assert not authorized("Bearer    ", "")
    assert not authorized("Bearer", "")
    assert not authorized("Bearer " + TOKEN + "x", TOKEN)
    assert not authorized("Basic " + TOKEN, TOKEN)
    assert not authorized("Bearer \udcff", TOKEN)  # undecodable header bytes: no exception
    with pytest.raises(HostError):
        create_app("/nonexistent-run", "")


@pytest.mark.parametrize("content", ["", "\n", "   \n\t\n"])
def test_an_empty_token_file_in_the_run_stops_host_serve(served, tmp_path, capsys, content):
    _, run, _ = served
    token_file = run / TOKEN_FILE_NAME
    token_file.write_text(content)
    token_file.chmod(0o600)
    try:
        assert main(["--run", str(run), "--bind", "127.0.0.1:0"]) == 2
    finally:
        token_file.unlink()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "0 characters" in error and str(token_file) in error
    empty = tmp_path / "empty.token"
    empty.write_text(content)
    empty.chmod(0o600)
    assert main(["--run", str(run), "--token-file", str(empty), "--bind", "127.0.0.1:0"]) == 2
    assert "0 characters" in capsys.readouterr().err


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604])
def test_a_token_file_others_can_read_is_refused(tmp_path, mode):
    token_file = tmp_path / "token"
    token_file.write_text("a-perfectly-long-token-0123456789\n")
    token_file.chmod(mode)
    with pytest.raises(HostError, match="chmod 600"):
        load_token(str(token_file), tmp_path)
    token_file.chmod(0o600)
    assert load_token(str(token_file), tmp_path) == "a-perfectly-long-token-0123456789"


def test_a_made_token_is_random_long_and_private(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    tokens = [load_token(None, folder, log=lambda message: None) for folder in (first, second)]
    assert tokens[0] != tokens[1] and min(len(t) for t in tokens) >= 40
    for folder, token in zip((first, second), tokens):
        path = folder / TOKEN_FILE_NAME
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == token
        assert load_token(None, folder) == token  # kept: devices keep working after a restart


def test_a_folder_that_is_not_a_run_is_refused_before_anything_is_written(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"not really")
    assert main(["--run", str(folder)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == ["cat.jpg"]


# -- item 13: what is public -------------------------------------------------------------------------------
def test_health_is_minimal_and_reports_need_the_token(served):
    server, run, card = served
    with httpx.Client(base_url=server.url) as client:
        health = client.get("/health")
        assert health.json() == {"status": "ok", "generations": 1}
        assert str(run) not in health.text
        assert client.post("/reports", json=report(card, 1, device_id="dev-public"), headers=AUTH).status_code == 201
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong-token-0123456789"}):
            answer = client.get("/reports", headers=headers)
            assert answer.status_code == 401 and "dev-public" not in answer.text
        assert "dev-public" in client.get("/reports", headers=AUTH).text
        assert str(run) not in client.get("/generations").text


# -- safe defaults: loopback, clear bind errors ------------------------------------------------------------
def test_host_serve_binds_to_loopback_unless_told_otherwise():
    default = get_args_parser().parse_args(["--run", "r"]).bind
    assert default == DEFAULT_BIND and parse_bind(default)[0] == "127.0.0.1"
    assert parse_bind("8700") == ("127.0.0.1", 8700)


def test_a_port_in_use_is_one_clear_error():
    taken = bind_socket("127.0.0.1", 0, "127.0.0.1:0")
    try:
        port = taken.getsockname()[1]
        with pytest.raises(HostError, match="cannot listen there"):
            bind_socket("127.0.0.1", port, "127.0.0.1:{}".format(port))
        with pytest.raises(HostError, match="cannot listen there"):
            bind_socket("no-such-host.invalid", 8700, "no-such-host.invalid:8700")
    finally:
        taken.close()


def test_a_run_whose_database_is_not_sqlite_is_refused_in_one_line(tmp_path, capsys):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / "lineage.sqlite").write_text("this is not a database\n" * 100)
    assert main(["--run", str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is not a run's SQLite database" in error
    assert sorted(os.listdir(broken)) == ["lineage.sqlite"]  # no token file written into it


@pytest.mark.parametrize("path, value", [(("stats", "latency_ms", "p99"), False), (("stats", "fps"), True),
                                         (("stats", "frames"), 10.0), (("sequence",), "7"), (("created_at",), "1.5"),
                                         (("stats", "dropped"), "0"), (("schema",), 1.0)])
def test_json_types_are_taken_as_the_schema_says_them(served, path, value):
    """Found by the fuzzer: pydantic's lax mode took false for a number and "7" for an integer."""
    server, run, card = served
    body = report(card, 1, device_id="dev-strict")
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    before = row_count(run)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/reports", json=body, headers=AUTH).status_code == 422
    assert row_count(run) == before


def test_a_full_database_answers_503_and_the_resend_is_stored(tmp_path, capfd):
    """Disk full (here SQLite's own limit, max_page_count, which fails the same way: SQLITE_FULL): a 503 with
    Retry-After and one log line, not a 500 with a traceback; the device's resend is stored once room is back."""
    run = tmp_path / "full-run"
    run.mkdir()
    card = make_tiny_run(run)
    app = create_app(run, TOKEN)
    server = BackgroundServer(app).start()
    database = app.state.lineage.db
    try:
        pages = database.execute("PRAGMA page_count").fetchone()[0]
        database.execute("PRAGMA max_page_count = {}".format(pages))
        big = report(card, 1, device_id="dev-full")
        big["platform"]["notes"] = "x" * 40000  # needs new pages
        with httpx.Client(base_url=server.url) as client:
            answer = client.post("/reports", json=big, headers=AUTH)
            assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
            assert "full" in answer.json()["detail"]
            assert client.get("/health").status_code == 200
            database.execute("PRAGMA max_page_count = 1073741823")
            assert client.post("/reports", json=big, headers=AUTH).status_code == 201
    finally:
        server.stop()
    assert row_count(run) == 1
    log = capfd.readouterr().err
    assert "Traceback" not in log and "could not store report 1 of dev-full" in log
