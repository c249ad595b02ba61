"""host-serve's pages laid out by a real headless Chromium at 1280 px (issue 30, kind 6): the index, with many
devices' figures arrived (long device ids), and /docs, are never wider than the window.

The pages carry no script, so the width is read through a same-origin wrapper: a loopback proxy serves a page
whose 1280-px iframe loads host-serve's page through the proxy and writes the framed document's scrollWidth into
its own DOM, which Chromium's --dump-dom prints. Needs Debian's ``chromium``; skipped with that reason otherwise."""
import http.server
import os
import re
import subprocess
import tempfile
import threading
import urllib.request

import httpx
import pytest

from tests.host.test_serve import TOKEN, report
from tests.tiny_run import served_tiny_run

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1280
WRAPPER = """<!doctype html><html><body style="margin:0"><pre id=w>pending</pre>
<iframe id=f src="/p{path}" style="width:{width}px;height:900px;border:0"></iframe>
<script>document.getElementById('f').onload = function () {{
  var doc = document.getElementById('f').contentDocument, d = doc.documentElement, widest = 0;
  var tables = doc.getElementsByTagName('table');
  for (var i = 0; i < tables.length; i++) widest = Math.max(widest, tables[i].getBoundingClientRect().right);
  document.getElementById('w').textContent = 'scrollWidth=' + d.scrollWidth + ' clientWidth=' + d.clientWidth +
    ' tableRight=' + Math.ceil(widest);
}};</script></body></html>"""


class SameOriginProxy(object):
    """Serves /wrap?path=P (the wrapper) and /p/... (host-serve's page, fetched from ``upstream``)."""

    def __init__(self, upstream):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/wrap"):
                    body = WRAPPER.format(path=self.path.split("path=", 1)[1], width=WIDTH).encode()
                    kind = "text/html"
                else:
                    with urllib.request.urlopen(upstream + self.path[len("/p"):], timeout=10) as answer:
                        body, kind = answer.read(), answer.headers.get("Content-Type", "text/html")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def laid_out_width(url):
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile, "--window-size={},1000".format(WIDTH + 40),
                                                   "--virtual-time-budget=5000", "--dump-dom", url],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                             timeout=120).stdout
    found = re.search(r"scrollWidth=(\d+) clientWidth=(\d+) tableRight=(\d+)", dom)
    assert found, dom[:2000]
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="/usr/bin/chromium is missing: apt-get install -y chromium")
def test_the_index_and_the_api_page_fit_1280_px_with_many_devices_reported(tmp_path):
    with served_tiny_run(tmp_path / "run", TOKEN) as (server, run, card):
        for number in range(12):  # a fleet with long names, each with a benchmark figure
            device = "jetson-tx1-lab-bench-{:02d}-with-a-rather-long-hostname.example.org".format(number)
            body = report(card, 1, kind="benchmark", device_id=device, fps=100.0 + number)
            answer = httpx.post(server.url + "/reports", json=body, headers={"Authorization": "Bearer " + TOKEN})
            assert answer.status_code == 201, answer.text
        proxy = SameOriginProxy(server.url)
        try:
            for page in ("/", "/docs"):
                scroll, client, table = laid_out_width("{}/wrap?path={}".format(proxy.url, page))
                # neither the page nor its table (inside its scroll box) wider than the window
                assert client <= WIDTH and scroll <= client and table <= client, (page, scroll, client, table)
        finally:
            proxy.close()
