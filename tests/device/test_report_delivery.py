"""A report leaves the spool only when host-serve stored it and said so (issue 32, kind 1, the device's part): a
redirect (a captive portal, a web server in front) is never followed and never counts; 404/405 keep the reports
with "check --report-to"; host-serve's 408 is sent again; a 2xx that is not host-serve's answer counts for nothing;
only what host-serve refuses as malformed is set aside. Real HTTP servers on loopback, a real spool on disk."""
import os
from http.server import BaseHTTPRequestHandler

import pytest

from device.reports import Reporter, ReportSpool
from tests.device import loopback

STORED = b'{"stored": true, "duplicate": false, "generation": null}'


class Scripted(object):
    """Answers each POST with the next (status, headers, body) of ``script`` (the last one repeats)."""

    def __init__(self, script):
        self.script, self.posts, self.gets = list(script), 0, 0
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, headers, body):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                scripted.posts += 1
                step = scripted.script[min(scripted.posts, len(scripted.script)) - 1]
                self.answer(*step)

            def do_GET(self):  # what a followed redirect would turn the POST into
                scripted.gets += 1
                self.answer(200, {"Content-Type": "text/html"}, b"<html>log in</html>")

        self.server, self.url = loopback.start(Handler)

    def close(self):
        loopback.stop(self.server)


@pytest.mark.parametrize("step, words", [
    ((302, {"Location": "/login"}, b""), "redirects to /login"),
    ((303, {"Location": "http://portal.example/"}, b""), "never sent after a redirect"),
    ((404, {}, b'{"detail": "Not Found"}'), "check --report-to"),
    ((405, {}, b""), "check --report-to"),
    ((200, {"Content-Type": "text/html"}, b"<html>welcome</html>"), "not as host-serve"),
])
def test_answers_that_are_not_host_serve_storing_it_keep_the_report(tmp_path, step, words):
    server, logged = Scripted([step]), []
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev")
        reporter = Reporter(server.url, spool, lambda: {}, log=logged.append)
        spool.add("periodic", {"n": 1})
        assert reporter.flush() is False
        assert len(spool.pending()) == 1 and reporter.delivered == 0 and server.gets == 0
        assert not os.path.exists(str(tmp_path / "rejected"))
        assert any(words in line for line in logged), logged
    finally:
        server.close()


def test_a_408_is_sent_again_and_only_malformed_reports_are_set_aside(tmp_path):
    server = Scripted([(408, {}, b'{"detail": "the body did not arrive within 30 s"}'), (201, {}, STORED),
                       (422, {}, b'{"detail": "bad"}')])
    try:
        spool = ReportSpool(str(tmp_path), device_id="dev")
        reporter = Reporter(server.url, spool, lambda: {}, log=lambda line: None)
        spool.add("periodic", {"n": 1})
        assert reporter.flush() is False and len(spool.pending()) == 1  # 408: kept, sent again
        assert reporter.flush() is True and spool.pending() == [] and reporter.delivered == 1
        spool.add("periodic", {"n": 2})
        assert reporter.flush() is True  # 422: host-serve refused it as malformed
        assert os.listdir(str(tmp_path / "rejected")) == ["report-000000000002.json"]
    finally:
        server.close()
