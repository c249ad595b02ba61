"""host-serve as the model shelf its users expect (issue 30, kind 6): /metrics in Prometheus' conventions (parsed
back by prometheus_client, linted by promtool where it is installed), a generation's folder listed at
/models/<generation>/, and pages whose tables wrap or scroll inside the page. A real run folder, the real app on
loopback."""
import shutil
import subprocess

import pytest

httpx = pytest.importorskip("httpx")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.host.test_serve import TOKEN, report  # noqa: E402
from tests.tiny_run import served_tiny_run  # noqa: E402

AUTH = {"Authorization": "Bearer " + TOKEN}


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
    with served_tiny_run(tmp_path_factory.mktemp("shelf") / "run", TOKEN, generations=2) as served:
        yield served


def samples(text, name):
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


def test_metrics_count_requests_reports_and_files_by_route_not_by_path(shelf):
    server, run, cards = shelf
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/generations").status_code == 200
        assert client.get("/models/best/model.onnx").status_code == 200
        assert client.get("/models/7/labels.txt").status_code == 404
        assert client.post("/reports", json=report(cards[0], 1, kind="final", device_id="shelf-1"),
                           headers=AUTH).status_code == 201
        assert client.post("/reports", json=report(cards[0], 1, kind="final", device_id="shelf-1"),
                           headers=AUTH).status_code == 200  # the same again: a duplicate
        assert client.post("/reports", json={"schema": 1}, headers=AUTH).status_code == 422
        text = client.get("/metrics").text
    requests = samples(text, "host_serve_requests_total")
    assert requests[(("method", "GET"), ("route", "/models/{generation}/{name}"), ("status", "200"))] >= 1
    assert requests[(("method", "GET"), ("route", "/models/{generation}/{name}"), ("status", "404"))] >= 1
    assert not any("/models/7" in dict(labels)["route"] for labels in requests)  # templates, never raw paths
    reports = samples(text, "host_serve_reports_total")
    assert reports[(("kind", "final"), ("outcome", "stored"))] == 1
    assert reports[(("kind", "final"), ("outcome", "duplicate"))] == 1
    assert reports[(("kind", "unknown"), ("outcome", "refused"))] == 1
    assert samples(text, "host_serve_model_files_total")[(("file", "model.onnx"),)] >= 1
    assert samples(text, "host_serve_generations") == {(): 2.0}
    assert samples(text, "host_serve_device_reports") == {(): 1.0}
    assert sum(samples(text, "host_serve_request_duration_seconds_count").values()) >= 6
    assert "shelf-1" not in text  # public: no device names


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus; scripts/test.sh does it)")
def test_promtool_finds_nothing_in_host_serves_metrics(shelf):
    server, _, _ = shelf
    text = httpx.get(server.url + "/metrics").text
    done = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout


def test_a_generation_folder_is_listed_with_its_files(shelf):
    server, run, cards = shelf
    with httpx.Client(base_url=server.url, timeout=30) as client:
        listed = client.get("/models/best/").json()
        plain = client.get("/models/1").json()
        assert client.get("/models/9/").status_code == 404
        for entry in listed["files"]:
            assert client.head(entry["url"]).status_code == 200
    names = [entry["name"] for entry in listed["files"]]
    assert {"model.onnx", "model-b1.onnx", "labels.txt", "card.json"} <= set(names)
    assert plain["generation"] == 1 and plain["sha256"] == cards[1]["sha256"]
    assert all(entry["bytes"] == (run / "gen-01" / entry["name"]).stat().st_size for entry in plain["files"])


def test_the_pages_tables_stay_inside_the_page(shelf):
    server, _, _ = shelf
    for path in ("/", "/docs"):
        page = httpx.get(server.url + path).text
        assert "<div class=scroll><table>" in page and ".scroll{max-width:100%;overflow-x:auto}" in page
    docs = httpx.get(server.url + "/docs").text
    assert "<td class='l wrap'>" in docs  # the operations' summaries wrap instead of widening the table
