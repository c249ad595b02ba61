"""device-serve end to end: a real loop over a real video file (ONNX Runtime), bad input refused in one line,
and reports delivered to a host-serve that starts after the device."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from device.loop import Smoother, softmax, top_k
from tests.device.test_sources import write_video

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(run folder, card) of a real exported 3-class 32x32 generation (needs the host side to make it)."""
    from tests.tiny_run import make_tiny_run
    run = tmp_path_factory.mktemp("tiny-run")
    return run, make_tiny_run(run)[0]


def device_serve(*args, timeout=60, env=None):
    """Run device-serve to the end; (returncode, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "device.serve"] + [str(a) for a in args], cwd=PROJECT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    return done.returncode, done.stdout, done.stderr


class RunningServe(object):
    """device-serve in the background, its output lines collected as they come."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, "-m", "device.serve"] + [str(a) for a in args], cwd=PROJECT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError("device-serve never printed {!r}; it printed:\n{}".format(text, "\n".join(self.seen)))

    def stop(self, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)


def test_softmax_top_k_and_smoothing():
    probabilities = softmax(np.array([[1.0, 3.0, 2.0, 1000.0]]))[0]
    assert probabilities.sum() == pytest.approx(1.0) and np.isfinite(probabilities).all()
    best = top_k(softmax(np.array([[1.0, 3.0, 2.0]]))[0], ["a", "b", "c"], k=2)
    assert [label for label, _ in best] == ["b", "c"] and best[0][1] > best[1][1]
    smoother = Smoother(0.5)
    smoother(np.array([1.0, 0.0]))
    assert smoother(np.array([0.0, 1.0])).tolist() == [0.5, 0.5]


def test_real_loop_over_a_video_file(tiny_model, tmp_path):
    run, card = tiny_model
    video = write_video(tmp_path / "clip.avi", frames=30, size=(160, 120))
    stats_path = tmp_path / "stats.json"
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", "--source", video, "--backend",
                                  "onnxruntime", "--headless", "--stats-json", stats_path, "--warmup", "0")
    assert code == 0, err
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 30 and stats["dropped"] == 0  # a file is read in lock-step: every frame classified
    assert stats["backend"] == "onnxruntime" and stats["precision"] == "fp32" and stats["preprocess"] == "cpu"
    assert stats["model_sha256"] == card["sha256"]
    assert stats["fps"] > 0 and stats["rss_mb"] > 0 and "gpu_mem_mb" in stats
    assert 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p95"] <= stats["latency_ms"]["p99"]
    for stage in ("capture", "preprocess", "infer", "postprocess", "output"):
        assert stats["stages_ms"][stage]["p50"] is not None
    assert stats["top"][0][0] in ("cat", "dog", "fox")
    assert stats["startup_s"] > 0
    assert "done: 30 frames" in out


def test_frames_and_duration_limits(tiny_model, tmp_path):
    run, _ = tiny_model
    video = write_video(tmp_path / "clip.avi", frames=5)
    stats_path = tmp_path / "stats.json"
    code, _, err = device_serve("--model", run / "gen-00" / "model.onnx", "--source", video, "--loop", "--frames",
                                "17", "--stats-json", stats_path, "--warmup", "0")
    assert code == 0, err
    assert json.loads(stats_path.read_text())["frames"] == 17
    code, _, err = device_serve("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--duration",
                                "1", "--stats-json", stats_path, "--warmup", "0", timeout=600)
    assert code == 0, err
    # it ran frames for about a second and then stopped by itself (an endless source: only the limit ends it,
    # and device_serve's timeout would catch a run that did not stop; no count of frames per second judged)
    assert json.loads(stats_path.read_text())["frames"] >= 1


@pytest.mark.parametrize("args, words", [
    (["--model", "/nonexistent/model.onnx", "--source", "synthetic"], "does not exist"),
    (["--model", "MODEL", "--source", "ftp://camera/1"], "unknown scheme"),
    (["--model", "MODEL", "--source", "/no/such/folder/clip.mp4"], "no such file"),
    (["--model", "MODEL", "--camera", "/dev/video87"], "/dev/video87 could not be opened"),
    (["--model", "MODEL", "--camera", "front"], "is not a camera"),
    (["--model", "MODEL"], "nothing to classify"),
    (["--model", "MODEL", "--source", "synthetic", "--report-to", "host:8700"], "not an http"),
    (["--model", "MODEL", "--source", "synthetic", "--http", "notaport"], "is not [HOST:]PORT"),
])
def test_bad_input_is_one_clear_line(tiny_model, args, words):
    model = str(tiny_model[0] / "gen-00" / "model.onnx")
    code, out, err = device_serve(*[model if a == "MODEL" else a for a in args] + ["--frames", "1"])
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("device-serve: error: ") and words in err


def test_reports_reach_a_host_started_after_the_device(tiny_model, tmp_path):
    from host.run.lineage import Lineage
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer
    run, card = tiny_model
    token = "device-test-token-0123456789"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic",
                         "--report-to", "http://127.0.0.1:{}".format(port), "--token", token, "--report-every",
                         "0.3", "--spool-dir", tmp_path / "spool", "--device-id", "late-host-dev", "--warmup", "0",
                         "--status-every", "0")
    serve.wait_for("unreachable")  # the first report found no host: it waits in the spool
    host = BackgroundServer(create_app(run, token), port=port).start()
    try:
        serve.wait_for("reached again", timeout=120)  # events, not times: the machine may be busy
        stored = wait_until(lambda: len(stored_reports(run, "late-host-dev")) >= 2)
        assert stored, "the spooled reports never reached the host"
        assert serve.stop(timeout=120) == 0
    finally:
        host.stop()
    lineage = Lineage(run / "lineage.sqlite")
    rows = [r for r in lineage.device_reports() if r["device_id"] == "late-host-dev"]
    lineage.close()
    sequences = [r["sequence"] for r in rows]
    assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 3
    assert rows[-1]["kind"] == "final" and rows[-1]["fps"] > 0 and rows[-1]["generation"] == 0
    body = rows[-1]["body"]
    assert body["backend"] == "onnxruntime" and body["model_sha256"] == card["sha256"]
    assert body["platform"]["python"] and body["stats"]["frames"] > 0
    assert body["stats"]["paced"] is False  # synthetic runs as fast as it goes: host-serve files it live-unpaced
    assert [p for p in os.listdir(str(tmp_path / "spool")) if p.startswith("report-")] == []


def test_a_source_with_its_own_clock_is_paced_and_a_folder_or_fast_file_is_not(tmp_path):
    from device.serve import source_is_paced
    from device.sources import CaptureSource, ImageFolderSource, SourceSpec, SyntheticSource
    video = str(tmp_path / "clip.avi")
    write_video(video, frames=3)
    realtime = CaptureSource(SourceSpec("file", video, video), realtime=True)
    fast = CaptureSource(SourceSpec("file", video, video), realtime=False)
    realtime.open(), fast.open()
    try:
        assert source_is_paced(realtime) and not source_is_paced(fast)
    finally:
        realtime.close(), fast.close()
    assert source_is_paced(CaptureSource(SourceSpec("camera", 0, "0")))  # a camera's clock, opened or not
    assert not source_is_paced(ImageFolderSource(SourceSpec("folder", str(tmp_path), str(tmp_path))))
    assert not source_is_paced(SyntheticSource())


def test_sigterm_finishes_like_ctrl_c(tiny_model, tmp_path):
    """docker stop / systemctl stop send SIGTERM: the figures and the final report are still written, exit 0."""
    from tests.device.test_reports import free_port
    run, card = tiny_model
    stats = tmp_path / "stats.json"
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--loop", "--warmup", "0",
                         "--status-every", "0.2", "--stats-json", stats, "--spool-dir", tmp_path / "spool",
                         "--report-to", "http://127.0.0.1:{}".format(free_port()), "--report-every", "60")
    serve.wait_for("FPS end-to-end")
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=30) == 0
    serve.wait_for("SIGTERM received; finishing")
    serve.wait_for("device-serve: done:")
    figures = json.loads(stats.read_text())
    assert figures["frames"] > 0 and figures["model_sha256"] == card["sha256"]
    spooled = [json.loads((tmp_path / "spool" / name).read_text()) for name in sorted(os.listdir(str(tmp_path / "spool")))
               if name.startswith("report-")]
    assert spooled and spooled[-1]["kind"] == "final" and spooled[-1]["stats"]["frames"] == figures["frames"]


@pytest.mark.parametrize("flags, words", [
    (["--duration", "nan"], "--duration nan must be above 0"),
    (["--duration", "inf"], "--duration inf must be above 0"),
    (["--frames", "0"], "--frames 0 must be at least 1"),
    (["--report-every", "nan"], "--report-every nan must be above 0"),
    (["--report-every", "1e9"], "at most 86400"),
    (["--spool-limit", "0"], "--spool-limit 0 must be at least 1"),
    (["--spool-limit", "100000000000"], "at most 1000000"),
    (["--warmup", "-1"], "--warmup -1.0 must be at least 0"),
    (["--warmup", "1e6"], "at most 600"),
    (["--status-every", "-1"], "--status-every -1.0 must be at least 0"),
    (["--smoothing", "1.5"], "--smoothing 1.5 must be in [0, 1)"),
    (["--smoothing", "nan"], "--smoothing nan must be in [0, 1)"),
])
def test_out_of_range_flags_are_refused_before_anything_starts(flags, words):
    from contract.errors import DeviceError
    from device.serve import check_args, get_args_parser
    args = get_args_parser().parse_args(["--model", "m.onnx", "--source", "synthetic"] + flags)
    with pytest.raises(DeviceError) as refused:
        check_args(args)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_an_out_of_range_flag_is_one_line_and_exit_2(tiny_model):
    model = str(tiny_model[0] / "gen-00" / "model.onnx")
    code, out, err = device_serve("--model", model, "--source", "synthetic", "--duration", "nan")
    assert code == 2 and err.strip() == "device-serve: error: --duration nan must be above 0 and at most 315360000 " \
                                        "(seconds; leave it out to run until stopped)"


def stored_reports(run, device_id="outage-test-dev"):
    from host.run.lineage import Lineage
    lineage = Lineage(run / "lineage.sqlite")
    try:
        return [r for r in lineage.device_reports() if r["device_id"] == device_id]
    finally:
        lineage.close()


def wait_until(condition, timeout=120):
    """Poll ``condition`` until it is true (returns its value) or ``timeout`` (a bound, not a speed) passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return condition()


def test_reports_survive_host_restarts_and_a_device_restart_exactly_once_in_order(tiny_model, tmp_path):
    """The fast form of trials/host_outages.py: host-serve goes away twice, the device restarts on its spool
    during an outage; every report it wrote is stored once, in sequence order, and the spool ends empty."""
    from host.run.lineage import Lineage
    from host.serve.app import create_app
    from host.serve.server import BackgroundServer
    from tests.device.test_reports import free_port
    run, card = tiny_model
    token = "outage-test-token-0123456789"
    port = free_port()
    spool = tmp_path / "spool"

    def device(duration):
        return RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--loop",
                            "--duration", duration, "--report-to", "http://127.0.0.1:{}".format(port), "--token",
                            token, "--report-every", "0.1", "--spool-dir", spool, "--device-id", "outage-test-dev",
                            "--warmup", "0", "--status-every", "0")
    # each step waits for an event the device logs or the host stores, never for a time: a busy machine only
    # makes the test slower
    host = BackgroundServer(create_app(run, token), port=port).start()
    first = device(600)
    assert wait_until(lambda: stored_reports(run)), "no report reached the host"
    host.stop()  # outage 1: the device restarts during it
    first.wait_for("unreachable", timeout=120)  # a report failed: it waits in the spool
    assert first.stop(timeout=120) == 0
    waiting = [n for n in os.listdir(str(spool)) if n.startswith("report-")]
    second = device(600)
    second.wait_for("unreachable", timeout=120)
    host = BackgroundServer(create_app(run, token), port=port).start()
    second.wait_for("reached again", timeout=120)
    host.stop()  # outage 2
    second.wait_for("unreachable", timeout=120)
    host = BackgroundServer(create_app(run, token), port=port).start()
    try:
        second.wait_for("reached again", timeout=120)
        assert second.stop(timeout=120) == 0
    finally:
        host.stop()
    lineage = Lineage(run / "lineage.sqlite")
    rows = [r for r in lineage.device_reports() if r["device_id"] == "outage-test-dev"]
    lineage.close()
    sequences = [r["sequence"] for r in rows]
    written = int((spool / "sequence").read_text())
    assert waiting and sequences == list(range(1, written + 1))  # none lost, none twice, in order
    assert [r["kind"] for r in rows].count("final") == 2
    assert [n for n in os.listdir(str(spool)) if n.startswith("report-")] == []


def test_window_follows_jetson_inference_and_headless_never_opens_one():
    from device.serve import get_args_parser, window_wanted
    parse = get_args_parser().parse_args
    base = ["--model", "m", "--source", "synthetic"]
    assert window_wanted(parse(base), available=True) is True  # a display is there: a window, as imagenet.py
    assert window_wanted(parse(base + ["--headless"]), available=True) is False
    assert window_wanted(parse(base), available=False) is False
    assert window_wanted(parse(base + ["--display"]), available=False) is False  # said in the log, not fatal


def test_headless_with_a_display_set_runs_without_a_window_and_one_status_line_a_second(tmp_path):
    from tests.engines.tiny_onnx import tiny_onnx
    argv = ("--model", tiny_onnx(), "--source", "synthetic", "--backend", "onnxruntime", "--warmup", "0",
            "--duration", "2.5", "--stats-json", tmp_path / "stats.json")
    # DISPLAY names a display that is not there: a window would be tried (and fail) without --headless
    code, out, err = device_serve(*(argv + ("--headless",)), env={"DISPLAY": ":99"})
    assert code == 0, err
    assert "window" not in out + err
    status = [line for line in out.splitlines() if " frames | " in line]
    frames = json.loads((tmp_path / "stats.json").read_text())["frames"]
    assert 1 <= len(status) <= 3 < frames  # one a second, not one a frame
    import cv2
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":  # pip's headless OpenCV: the window is tried,
        code, out, err = device_serve(*argv, env={"DISPLAY": ":99"})  # refused, and the run goes on without it
        assert code == 0, err
        assert "cannot open a window" in out


def test_display_and_headless_together_are_refused(capsys):
    from device.serve import main
    with pytest.raises(SystemExit) as stopped:
        main(["--model", "m", "--source", "synthetic", "--display", "--headless"])
    assert stopped.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_device_serve_reads_the_model_file_once_per_start(monkeypatch, tmp_path):
    """The model is opened once (device.model_source.open_model: resolved, read, hashed, checked) and that
    ModelInfo is handed to the backend: device-serve's own Python code opens the file once (ONNX Runtime then
    loads it itself). It was opened four times: a readability probe and a read in serve, both again in
    open_backend."""
    import builtins
    from device.serve import main
    from tests.engines.tiny_onnx import tiny_onnx
    model = os.path.abspath(tiny_onnx())
    real_open, opened = builtins.open, []

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(file)) == model:
            opened.append(args[0] if args else kwargs.get("mode", "r"))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting_open)
    assert main(["--model", model, "--source", "synthetic", "--backend", "onnxruntime", "--frames", "2",
                 "--warmup", "0", "--status-every", "0", "--stats-json", str(tmp_path / "stats.json")]) == 0
    assert opened == ["rb"]


def test_settings_are_checked_once_and_cannot_be_changed_afterwards():
    """device-serve's settings come from the command line once (device.serve_settings): the live page's address is
    parsed there, the input and outputs resolved, and writing to them afterwards is refused."""
    from device.serve import check_args, get_args_parser
    settings = check_args(get_args_parser().parse_args(["--model", "m.onnx", "--camera", "csi://0", "--http",
                                                        "8080", "out.mp4"]))
    assert settings.http_address == ("127.0.0.1", 8080) and settings.source_text == "csi://0"
    assert [spec.kind for spec in settings.output_specs] == ["video"]
    with pytest.raises(AttributeError, match="read-only"):
        settings.top = 3
    from contract.errors import DeviceError
    with pytest.raises(DeviceError, match="is not a camera"):
        check_args(get_args_parser().parse_args(["--model", "m.onnx", "--camera", "rtsp://x"]))


def test_a_run_that_fails_midway_still_spools_its_final_report(monkeypatch, tmp_path):
    """The final report is closed inside the run's ExitStack: a backend that fails after some frames (a GPU
    error mid-run) ends the run with its one-line error, and the spool still holds the final report."""
    from device.backends.onnxruntime_backend import OnnxRuntimeBackend
    from device.serve import main
    from tests.device.test_reports import free_port
    from tests.engines.tiny_onnx import tiny_onnx
    real_infer, calls = OnnxRuntimeBackend._infer, []

    def failing_infer(self, batch):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_infer(self, batch)
    monkeypatch.setattr(OnnxRuntimeBackend, "_infer", failing_infer)
    spool = tmp_path / "spool"
    code = main(["--model", os.path.abspath(tiny_onnx()), "--source", "synthetic", "--loop", "--backend",
                 "onnxruntime", "--warmup", "0", "--status-every", "0", "--spool-dir", str(spool),
                 "--report-to", "http://127.0.0.1:{}".format(free_port()), "--report-every", "60"])
    assert code != 0
    spooled = [json.loads((spool / name).read_text()) for name in sorted(os.listdir(str(spool)))
               if name.startswith("report-")]
    assert spooled and spooled[-1]["kind"] == "final" and spooled[-1]["stats"]["frames"] >= 1


def test_a_live_camera_does_not_stream_while_the_backend_is_built(monkeypatch, tmp_path):
    """The camera is opened to be checked, closed while the engine builds (minutes the first time), and opened
    again for the loop."""
    import numpy as np
    import device.backends as backends
    import device.sources as sources
    from device.serve import main
    from tests.engines.tiny_onnx import tiny_onnx
    events = []

    class Camera(object):
        live, spec = True, sources.SourceSpec("camera", 0, "0")
        opened = False

        def describe(self):
            return "camera 0"

        def open(self):
            self.opened = True
            events.append("open")

        def close(self):
            if self.opened:
                events.append("close")
            self.opened = False

        def read(self):
            return np.zeros((32, 32, 3), np.uint8) if self.opened else None
    camera = Camera()

    def fake_open_source(text, **kwargs):
        camera.open()
        return camera
    real_open_backend = backends.open_backend

    def recording_open_backend(*args, **kwargs):
        events.append("backend while camera {}".format("open" if camera.opened else "closed"))
        return real_open_backend(*args, **kwargs)
    monkeypatch.setattr(sources, "open_source", fake_open_source)
    monkeypatch.setattr(backends, "open_backend", recording_open_backend)
    assert main(["--model", os.path.abspath(tiny_onnx()), "--source", "0", "--backend", "onnxruntime",
                 "--frames", "3", "--warmup", "0", "--status-every", "0"]) == 0
    assert events[:4] == ["open", "close", "backend while camera closed", "open"], events
