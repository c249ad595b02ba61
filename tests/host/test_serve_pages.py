"""host-serve as the place models are fetched from: model-b1.onnx for jetson-inference, the latest and best
aliases, HEAD, the page at / and the API reference at /docs (a real server on loopback, a real run folder)."""
import hashlib
import json
import sqlite3

import pytest

httpx = pytest.importorskip("httpx")

from host.run.lineage import Lineage  # noqa: E402
from host.serve.app import create_app  # noqa: E402
from host.serve.server import BackgroundServer
from tests.tiny_run import make_tiny_run  # noqa: E402

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three generations: 0 (top-1 0.9, largest), 1 (0.8), 2 (0.6, smallest); the run allows 15 points below the
    ancestor and a floor of 0.7, so the best is 1 (the smallest within both) and the latest is 2."""
    run = tmp_path_factory.mktemp("run")
    cards = make_tiny_run(run, generations=3)
    db = sqlite3.connect(str(run / "lineage.sqlite"))
    for number, (top1, size) in enumerate(((0.9, 3000), (0.8, 2000), (0.6, 1000))):
        db.execute("UPDATE generations SET top1 = ?, size_bytes = ? WHERE generation = ?", (top1, size, number))
    db.commit()
    db.close()
    lineage = Lineage(run / "lineage.sqlite")
    lineage.save_config({"top1_floor": 0.7, "top1_tolerance": 0.15})
    lineage.add_device_report("tx1", 1, cards[1]["sha256"], "benchmark", 160.0,
                              {"stats": {"fps": 160.0, "frames": 10, "batch": 1, "stable": True}})
    lineage.add_device_report("tx1", 2, cards[1]["sha256"], "final", 15.0,
                              {"stats": {"fps": 15.0, "frames": 99, "paced": True}})
    lineage.close()
    server = BackgroundServer(create_app(run, TOKEN)).start()
    yield server, run, cards
    server.stop()


def test_model_b1_is_served_and_checked_against_its_card(served):
    server, run, cards = served
    with httpx.Client(base_url=server.url) as client:
        answer = client.get("/models/0/model-b1.onnx")
        assert answer.status_code == 200
        expected = cards[0]["static_batch"]["sha256"]
        assert answer.headers["x-sha256"] == expected == hashlib.sha256(answer.content).hexdigest()
        assert answer.content == (run / "gen-00" / "model-b1.onnx").read_bytes()


def test_latest_and_best_name_a_generation_and_a_bad_name_says_what_is_allowed(served):
    server, run, cards = served
    with httpx.Client(base_url=server.url) as client:
        latest = client.get("/models/latest/model.onnx")
        assert latest.status_code == 200 and latest.headers["x-sha256"] == cards[2]["sha256"]
        assert latest.headers["x-generation"] == "2" and latest.headers["content-location"] == "/models/2/model.onnx"
        best = client.get("/models/best/model-b1.onnx")
        assert best.status_code == 200 and best.headers["x-generation"] == "1"
        assert best.headers["x-sha256"] == cards[1]["static_batch"]["sha256"]
        assert client.get("/models/best/labels.txt").text.split() == ["cat", "dog", "fox"]
        wrong = client.get("/models/newest/model.onnx")
        assert wrong.status_code == 404 and "give a number, 'latest' or 'best'" in wrong.json()["detail"]


def test_head_answers_like_get_without_a_body(served):
    server, run, cards = served
    with httpx.Client(base_url=server.url) as client:
        for path in ("/models/0/model.onnx", "/models/latest/model-b1.onnx", "/generations", "/health", "/",
                     "/docs"):
            head, get = client.head(path), client.get(path)
            assert head.status_code == 200 == get.status_code, path
            assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], path
        assert client.head("/models/0/model.onnx").headers["x-sha256"] == cards[0]["sha256"]
        assert client.head("/models/9/model.onnx").status_code == 404


def test_the_index_page_lists_each_generation_with_its_figures_and_links(served):
    server, run, cards = served
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "run " + run.name in text and "<title>" in text
    for number in range(3):
        for name in ("model.onnx", "model-b1.onnx", "labels.txt", "card.json"):
            assert 'href="/models/{}/{}"'.format(number, name) in text
    assert "2 <b>(latest)</b>" in text and "1 <b>(best)</b>" in text
    assert "80.0 %" in text and "tx1 benchmark-b1: 160.0" in text and "tx1 live-paced: 15.0" in text
    assert 'href="/generations"' in text and 'href="/docs"' in text
    assert "device-serve --model {}/models/best/model.onnx csi://0".format(server.url) in text  # as reached


def test_docs_lists_every_route_of_the_openapi_document_without_the_internet(served):
    server, run, cards = served
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/docs").text
        paths = json.loads(client.get("/openapi.json").text)["paths"]
    assert "/models/{generation}/{name}" in paths and "/" not in paths
    for path in paths:
        assert "<code>{}</code>".format(path.replace("{", "{")) in page
    assert "<script" not in page and "cdn" not in page.lower()
