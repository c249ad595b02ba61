"""device-agent --follow: a real run folder (two exported generations), host-serve on loopback, the agent
fetching, benchmarking (ONNX Runtime, 0.3 s) and reporting each generation once, through the spool."""
import json
import socket
import threading
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")

from device import agent_follow  # noqa: E402
from device.agent import main  # noqa: E402
from host.run.lineage import Lineage  # noqa: E402
from tests.tiny_run import make_tiny_run  # noqa: E402

TOKEN = "agent-test-token-0123456789"
FAST = ["--once", "--seconds", "0.3", "--warmup", "0.05", "--backend", "onnxruntime"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return run, make_tiny_run(run, generations=2, local_fps=None)


@pytest.fixture(scope="module")
def host(run_folder):
    from tests.tiny_run import serving
    run, cards = run_folder
    with serving(run, TOKEN) as server:
        yield server, run, cards


@pytest.fixture()
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)  # one others may read is refused, as host-serve refuses it
    return str(path)


def reports_of(run, device_id):
    lineage = Lineage(run / "lineage.sqlite")
    try:
        return [r for r in lineage.device_reports() if r["device_id"] == device_id], lineage.device_fps()
    finally:
        lineage.close()


def dead_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:{}".format(port)


def test_once_benchmarks_and_reports_every_generation_once(host, tmp_path, token_file):
    server, run, cards = host
    argv = ["--follow", server.url, "--token-file", token_file, "--device-id", "jetson-a",
            "--cache-dir", str(tmp_path / "cache")] + FAST
    assert main(argv) == 0
    reports, measured = reports_of(run, "jetson-a")
    assert sorted(r["generation"] for r in reports) == [0, 1]
    for report, card in zip(sorted(reports, key=lambda r: r["generation"]), cards):
        body = report["body"]
        assert report["kind"] == body["kind"] == "benchmark"
        assert report["model_sha256"] == card["sha256"] == body["bench"]["model_sha256"]
        assert report["fps"] == body["stats"]["fps"] > 0
        assert body["stats"]["frames"] >= 10 and body["stats"]["fps"] == body["bench"]["results"][0]["throughput_ips"]
        assert set(body["stats"]["latency_ms"]) == {"p50", "p95", "p99"}
        assert body["generation"] == report["generation"] and body["backend"] == "onnxruntime"
        platform = body["platform"]
        assert platform["precision"] == "fp32" and platform["backend"] == "onnxruntime"
        assert platform["versions"]["onnxruntime"] and "gpu_name" in platform and "power_mode" in platform
    assert measured[0] > 0 and measured[1] > 0
    state = json.loads((tmp_path / "cache" / "agent-state-jetson-a.json").read_text())
    assert len(state["benchmarked"]) == 2 and not state["failed"]

    assert main(argv) == 0  # remembered: nothing is measured or reported again
    assert len(reports_of(run, "jetson-a")[0]) == 2
    # the same cache folder under another device id measures for that id (the state is per device)
    other = [a if a != "jetson-a" else "jetson-a2" for a in argv]
    assert main(other) == 0 and len(reports_of(run, "jetson-a2")[0]) == 2


def test_reports_wait_in_the_spool_until_the_host_takes_them(host, tmp_path, token_file, capsys):
    server, run, cards = host
    common = ["--follow", server.url, "--token-file", token_file, "--device-id", "jetson-b",
              "--cache-dir", str(tmp_path / "cache")] + FAST
    assert main(common + ["--report-to", dead_url()]) == 1  # measured, but the reports cannot be delivered
    assert len(list((tmp_path / "cache" / "reports").glob("report-*.json"))) == 2
    assert reports_of(run, "jetson-b")[0] == []
    assert "wait in" in capsys.readouterr().out

    assert main(common) == 0  # the host is reachable now: the spool is delivered, nothing is measured again
    reports = reports_of(run, "jetson-b")[0]
    assert sorted(r["generation"] for r in reports) == [0, 1] and all(r["fps"] > 0 for r in reports)
    assert list((tmp_path / "cache" / "reports").glob("report-*.json")) == []
    assert main(common) == 0
    assert len(reports_of(run, "jetson-b")[0]) == 2


def test_a_host_that_is_down_then_comes_up(run_folder, tmp_path, token_file):
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer
    run, cards = run_folder
    argv = ["--follow", dead_url(), "--token-file", token_file, "--device-id", "jetson-c",
            "--cache-dir", str(tmp_path / "cache")] + FAST
    assert main(argv) == 1  # nothing listed, nothing measured, a one-line message
    server = BackgroundServer(create_app(run, TOKEN)).start()
    try:
        argv[1] = server.url
        assert main(argv + ["--max-generations", "1"]) == 0
        assert [r["generation"] for r in reports_of(run, "jetson-c")[0]] == [0]
    finally:
        server.stop()


def test_follow_polls_until_max_generations(host, tmp_path, token_file):
    server, run, cards = host
    argv = ["--follow", server.url + "/generations", "--token", TOKEN, "--device-id", "jetson-d",
            "--cache-dir", str(tmp_path / "cache"), "--interval", "0.1", "--max-generations", "2",
            "--seconds", "0.2", "--warmup", "0", "--backend", "onnxruntime", "--batch", "2"]
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(main(argv)))
    thread.start()
    thread.join(60)
    assert outcome == [0]
    reports = reports_of(run, "jetson-d")[0]
    assert sorted(r["generation"] for r in reports) == [0, 1]
    throughput = reports[0]["body"]["stats"]["throughput_ips"]
    assert set(throughput) == {"1", "2"}  # batch 1 is always measured: the report's fps is defined there


def test_a_generation_that_fails_is_remembered_not_retried(host, tmp_path, token_file, monkeypatch):
    server, run, cards = host

    def broken(*args, **kwargs):
        raise RuntimeError("engine build failed")
    monkeypatch.setattr("device.bench.bench_model", broken)
    argv = ["--follow", server.url, "--token-file", token_file, "--device-id", "jetson-e",
            "--cache-dir", str(tmp_path / "cache")] + FAST
    assert main(argv) == 1
    state = json.loads((tmp_path / "cache" / "agent-state-jetson-e.json").read_text())
    assert len(state["failed"]) == 2 and "engine build failed" in list(state["failed"].values())[0]["error"]
    assert main(argv) == 0  # not retried
    assert reports_of(run, "jetson-e")[0] == []


@pytest.mark.parametrize("extra, fragment", [
    (["--seconds", "0"], "--seconds"),
    (["--batch", "x"], "--batch"),
    (["--precision", "fp8"], "--precision"),
    (["--interval", "-1"], "--interval"),
    (["--max-generations", "0"], "--max-generations"),
    (["--follow", "host:8700"], "--follow"),
    (["--token-file", "/nonexistent/token"], "--token-file"),
    (["--token", "a", "--token-file", "b"], "not allowed with"),
])
def test_bad_arguments_exit_2_with_one_line(extra, fragment, tmp_path, capsys):
    argv = ["--follow", "http://127.0.0.1:9", "--token", TOKEN, "--cache-dir", str(tmp_path)]
    if "--token-file" in extra:
        argv = argv[:2] + argv[4:]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("device-agent: error:") and fragment in err
    assert "Traceback" not in err


def test_no_token_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SQUISHEDNETS_TOKEN", raising=False)
    assert main(["--follow", "http://127.0.0.1:9", "--cache-dir", str(tmp_path)]) == 2
    assert "--token" in capsys.readouterr().err


def test_follow_backs_off_while_the_host_is_down_and_stops_on_request(tmp_path):
    messages = []
    agent = agent_follow.Agent(dead_url(), TOKEN, device_id="jetson-f", backend="onnxruntime",
                               cache_dir=str(tmp_path / "cache"), log=messages.append)
    stop = threading.Event()
    polls = []
    list_new = agent.list_new

    def counted():  # stops after the third poll: retries counted, not timed
        polls.append(1)
        if len(polls) >= 3:
            stop.set()
        return list_new()
    agent.list_new = counted
    try:
        assert agent.follow(interval_s=0.05, stop=stop) == 0
    finally:
        agent.close()
    assert sum("cannot list generations" in m for m in messages) == 1  # said once, not every retry
    assert agent.measured == 0


def test_an_unstable_figure_is_measured_again_reported_and_said_as_such(host, tmp_path, token_file, monkeypatch,
                                                                         capsys):
    """Run times that vary (a stand-in measure: CV 60 %): device-bench measures each batch 3 times, the report
    says ``stable`` false, the agent's line says UNSTABLE, and host-serve keeps the figure marked."""
    from device import bench
    from tests.device.test_bench import Measure
    server, run, cards = host
    real = bench.bench_model
    measures = []

    def varying(*args, **kwargs):
        measures.append(Measure([0.001, 0.004] * 10))
        return real(*args, measure=measures[-1], **kwargs)
    monkeypatch.setattr("device.bench.bench_model", varying)
    argv = ["--follow", server.url, "--token-file", token_file, "--device-id", "jetson-u",
            "--cache-dir", str(tmp_path / "cache")] + FAST
    assert main(argv) == 0
    assert [m.calls for m in measures] == [3, 3]
    out = capsys.readouterr().out
    from device.bench import unstable_advice
    assert out.count("UNSTABLE after 3 measurements") == 2 and unstable_advice() in out
    reports = reports_of(run, "jetson-u")[0]
    assert len(reports) == 2 and all(r["body"]["stats"]["stable"] is False for r in reports)
    lineage = Lineage(run / "lineage.sqlite")
    try:
        figures = [f for g in lineage.device_figures().values() for f in g if f["device_id"] == "jetson-u"]
    finally:
        lineage.close()
    assert len(figures) == 2 and all(f["stable"] is False and f["measurement"] == "benchmark-b1" for f in figures)



def test_a_wrong_token_is_said_before_anything_is_measured(tmp_path, monkeypatch):
    from device.agent import main
    from tests.tiny_run import served_tiny_run
    measured = []
    monkeypatch.setattr("device.bench.bench_model", lambda *a, **k: measured.append(1))
    with served_tiny_run(tmp_path / "run", "right-token") as (server, run, card):
        code = main(["--follow", server.url, "--token", "wrong-token", "--device-id", "jetson-t", "--once",
                     "--cache-dir", str(tmp_path / "cache")] + FAST)
    assert code == 2 and measured == []


def test_an_older_agents_shared_state_is_carried_over_for_its_own_device(tmp_path):
    from device.agent_state import STATE_FILE, AgentState
    shared = AgentState(str(tmp_path / STATE_FILE))
    shared.mark("benchmarked", "a|onnxruntime|fp32", {"device_id": "jetson-a", "fps": 1.0})
    shared.mark("benchmarked", "b|onnxruntime|fp32", {"device_id": "jetson-b", "fps": 2.0})
    mine = AgentState.for_device(str(tmp_path), "jetson-a")
    assert mine.seen("a|onnxruntime|fp32") and not mine.seen("b|onnxruntime|fp32")
    assert (tmp_path / "agent-state-jetson-a.json").is_file()
