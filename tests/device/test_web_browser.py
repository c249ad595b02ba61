"""The live page in a real headless Chromium: the MJPEG stream shows and the numbers fill in.

Needs Debian's ``chromium`` (apt-get install -y chromium); skipped with that reason where it is missing."""
import os
import re
import subprocess
import tempfile

import pytest

from tests.device.test_serve import RunningServe, tiny_model  # noqa: F401  (the fixture)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="/usr/bin/chromium is missing: apt-get install -y chromium")
def test_page_shows_stream_top5_fps_and_memory_in_chromium(tiny_model):  # noqa: F811
    run, _ = tiny_model
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "--source", "synthetic", "--http",
                         "127.0.0.1:0", "--duration", "90", "--warmup", "0", "--status-every", "0")
    try:
        url = re.search(r"(http://\S+/)", serve.wait_for("live page at")).group(1)
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile, "--virtual-time-budget=3000",
                                                       "--dump-dom", url],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                 timeout=90).stdout
    finally:
        assert serve.stop() == 0
    # the <img> decoded MJPEG frames (the page's script writes their size once the first one has loaded)
    assert re.search(r'id="stream-status">stream: live 640x480<', dom), dom[:2000]
    # the top-5 bars: one row per class (3 here), each with a label, a bar and a percentage
    rows = re.findall(r'class="row top5-row"><span class="label">(\w+)</span>.*?class="pct">([\d.]+)%', dom)
    assert sorted(label for label, _ in rows) == ["cat", "dog", "fox"]
    assert abs(sum(float(p) for _, p in rows) - 100.0) < 0.1
    # both fps figures, the latency per stage and memory are numbers, not the "-" placeholders
    fps = float(re.search(r'id="fps">([\d.]+)<', dom).group(1))
    network = float(re.search(r'id="network-fps">([\d.]+)<', dom).group(1))
    assert fps > 0 and network > 0
    assert re.search(r"<td>infer</td><td class=\"num\">[\d.]+ / [\d.]+</td>", dom)
    assert re.search(r'id="rss">[\d.]+ MB<', dom) and re.search(r'id="frames">\d+<', dom)
