"""device-serve's live page, /stats, /metrics, its status lines, --stats-json and its spooled reports never
carry host-serve's token (issue 11, safe defaults): a real device-serve process over a real model, with the
token given as a flag and through SQUISHEDNETS_TOKEN."""
import json
import os
import subprocess
import sys
import time
from urllib.request import urlopen

import pytest

from tests.device.test_reports import free_port
from tests.device.test_serve import PROJECT, RunningServe, tiny_model  # noqa: F401 (a fixture)

TOKEN = "do-not-show-this-token-5b1e0c9a"


class RunningServeWithEnv(RunningServe):
    def __init__(self, environment, *args):
        self.process = subprocess.Popen([sys.executable, "-m", "device.serve"] + [str(a) for a in args], cwd=PROJECT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                        env=dict(os.environ, **environment))
        import queue
        import threading
        self.lines, self.seen = queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_token_is_on_no_page_and_in_no_file(tiny_model, tmp_path, how):  # noqa: F811
    run, _ = tiny_model
    port = free_port()
    stats = tmp_path / "stats.json"
    args = ["--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--loop", "--warmup", "0",
            "--http", "127.0.0.1:{}".format(port), "--status-every", "0.2", "--stats-json", stats,
            "--spool-dir", tmp_path / "spool", "--report-to", "http://127.0.0.1:{}".format(free_port()),
            "--report-every", "0.3"]
    environment = {}
    if how == "flag":
        args += ["--token", TOKEN]
    else:
        environment["SQUISHEDNETS_TOKEN"] = TOKEN
    serve = RunningServeWithEnv(environment, *args)
    try:
        serve.wait_for("FPS end-to-end", timeout=60)
        deadline = time.monotonic() + 120  # until a report attempt failed, so the delivery status is on the page
        while time.monotonic() < deadline:
            with urlopen("http://127.0.0.1:{}/stats".format(port), timeout=60) as answer:
                if json.loads(answer.read().decode("utf-8")).get("report_failed_attempts"):
                    break
            time.sleep(0.05)
        pages = {}
        for path in ("/", "/stats", "/metrics", "/health"):
            with urlopen("http://127.0.0.1:{}{}".format(port, path), timeout=10) as answer:
                pages[path] = answer.read().decode("utf-8", "replace")
    finally:
        assert serve.stop() == 0
    assert "reports_waiting" in pages["/stats"] and "squishednets_frames_per_second" in pages["/metrics"]
    for path, text in pages.items():
        assert TOKEN not in text, "{} shows the token".format(path)
    while not serve.lines.empty():
        serve.seen.append(serve.lines.get())
    assert not any(TOKEN in line for line in serve.seen), "a status line shows the token"
    assert TOKEN not in stats.read_text()
    for folder, _, names in os.walk(str(tmp_path / "spool")):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                assert TOKEN.encode() not in handle.read(), "{} holds the token".format(name)
