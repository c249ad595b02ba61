"""The live demo: one small HTTP server (standard library, Python 3.6) beside the loop.

    /             the page: the MJPEG stream, the top-5 with bars, fps (end-to-end and network-only, named
                  as such), latency per stage and memory, updated live from /stats
    /stream.mjpg  the annotated frames as MJPEG (multipart/x-mixed-replace); ?frames=N ends after N frames
    /frame.jpg    the newest annotated frame
    /stats        the telemetry snapshot (JSON)
    /metrics      the same as Prometheus text
    /health       "ok"

Frames are JPEG-encoded by the HTTP threads, once per new frame however many viewers watch, and only
while someone watches: the loop itself only hands over a reference to the annotated frame.
"""
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from contract.errors import DeviceError
from contract.files import finite_json
from device.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from device.prometheus import metrics_registry

BOUNDARY = "squishednetsframe"


class FrameHub(object):
    """The newest annotated frame, JPEG-encoded on demand (once per frame) for every viewer."""

    def __init__(self, quality=80):
        self.quality = int(quality)
        self.viewers = 0
        self.closed = False
        self._frame = None
        self._annotated = False
        self._sequence = 0
        self._jpeg = None
        self._jpeg_sequence = -1
        self._condition = threading.Condition()
        self._encode_lock = threading.Lock()

    @property
    def watched(self):
        return self.viewers > 0

    def publish(self, frame_bgr, annotated=True):
        """Hand over the newest frame (the caller must not change it afterwards); ``annotated``: whether the
        classification is drawn on it (the loop draws only while someone watches)."""
        with self._condition:
            self._frame = frame_bgr
            self._annotated = bool(annotated)
            self._sequence += 1
            self._condition.notify_all()

    def close(self):
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def wait_jpeg(self, after=0, timeout=5.0, annotated=False):
        """(sequence, JPEG bytes) of the first frame newer than ``after`` (and with ``annotated``, one with the
        classification drawn on it); None on timeout or when closed."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while (self._sequence <= after or (annotated and not self._annotated)) and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            if self._sequence <= after or (annotated and not self._annotated):
                return None
            sequence, frame = self._sequence, self._frame
        return sequence, self._encode(sequence, frame)

    def _encode(self, sequence, frame):
        import cv2
        with self._encode_lock:
            if self._jpeg_sequence != sequence:
                ok, data = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), self.quality])
                if not ok:
                    raise DeviceError("JPEG encoding of a frame failed")
                self._jpeg, self._jpeg_sequence = data.tobytes(), sequence
            return self._jpeg


class _ThreadingHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    """One thread per connection (an MJPEG viewer holds its thread for as long as it watches, so a bounded pool
    would let a few viewers block /stats), and a listen backlog of 128 instead of the library's 5: with 5, a
    burst of 50 page loads overflowed the accept queue and the dropped SYNs were retried by the clients after
    1 s, 3 s... (50 concurrent /stats took up to 4.5 s). The threads only read the telemetry and encode a JPEG
    once per new frame, so viewers cost the loop no more than that encoding."""
    daemon_threads = True  # a viewer left open never holds the process
    allow_reuse_address = True
    request_queue_size = 128  # the listen() backlog; Linux caps it at net.core.somaxconn

    def __init__(self, *args, **kwargs):
        HTTPServer.__init__(self, *args, **kwargs)
        self.max_connections = connection_cap()
        self.open_connections = 0
        self.refused = 0
        self._count_lock = threading.Lock()

    def process_request(self, request, client_address):
        """At most ``max_connections`` open at once (below the open-file limit, so the source's files and the
        telemetry's reads always find a descriptor): one more gets a short 503 and is closed at once."""
        with self._count_lock:
            full = self.open_connections >= self.max_connections
            if not full:
                self.open_connections += 1
            else:
                self.refused += 1
        if full:
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n")
            except (IOError, OSError):
                pass
            self.shutdown_request(request)
            return
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            with self._count_lock:
                self.open_connections -= 1

    def handle_error(self, request, client_address):
        pass  # a client that went away or stalled is not the run's error (no traceback per connection)


#: seconds a connection may take to send its request line and headers, and a stalled viewer may block a write
CONNECTION_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 200


def connection_cap(limit=None):
    """How many connections the live page holds open at once: MAX_CONNECTIONS, or fewer where the process's
    open-file limit is low (systemd's 1024; a ``ulimit -n 256``), leaving half of it and 48 more for the model,
    the source, the spool and /proc."""
    if limit is None:
        try:
            import resource
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, ValueError, OSError):
            limit = None
    if limit is None or limit < 0:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, (int(limit) - 48) // 2))


class LiveServer(object):
    """The demo server. ``snapshot`` is a callable returning the telemetry dict; ``hub`` a FrameHub."""

    def __init__(self, host, port, snapshot, hub, title="squishednets", max_stream_fps=30.0, log=print,
                 histograms=None):
        self.snapshot = snapshot
        # /metrics: prometheus_client over the same snapshot, the latency histograms and the process
        self.registry = metrics_registry(snapshot, histograms)
        self.hub = hub
        self.title = title
        self.max_stream_fps = max_stream_fps
        self.log = log
        handler = _make_handler(self)
        try:
            self.server = _ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise DeviceError("--http {}:{} cannot listen ({}): pick another port or stop what uses it".format(
                host, port, error.strerror or error))
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="live-http", daemon=True)

    @property
    def url(self):
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host
        return "http://{}:{}/".format(host, self.port)

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self.hub.close()
        self.server.shutdown()
        self.server.server_close()


def _make_handler(live):
    class Handler(BaseHTTPRequestHandler):
        server_version = "squishednets-device/1"
        protocol_version = "HTTP/1.0"  # streams end with the connection; simple for MJPEG and browsers
        timeout = CONNECTION_TIMEOUT_S  # an idle or half-open connection is closed, never held for ever

        def log_message(self, format, *args):  # quiet: the status line is what users read
            pass

        def do_GET(self):
            path, _, query = self.path.partition("?")
            params = dict(p.partition("=")[::2] for p in query.split("&") if p)
            try:
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", render_page(live.title).encode("utf-8"))
                elif path == "/stats":
                    self._send(200, "application/json", json.dumps(finite_json(live.snapshot())).encode("utf-8"))
                elif path == "/metrics":
                    from prometheus_client import generate_latest
                    self._send(200, METRICS_CONTENT_TYPE, generate_latest(live.registry))
                elif path == "/health":
                    self._send(200, "text/plain; charset=utf-8", b"ok\n")
                elif path == "/frame.jpg":
                    live.hub.viewers += 1
                    try:
                        # the annotated frame, as the page shows it: the loop draws once it sees a viewer
                        found = live.hub.wait_jpeg(0, timeout=5.0, annotated=True)
                    finally:
                        live.hub.viewers -= 1
                    if found is None:
                        self._send(503, "text/plain; charset=utf-8", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", found[1])
                elif path == "/stream.mjpg":
                    limit = int(params.get("frames", "0") or 0) if params.get("frames", "").isdigit() else 0
                    self._stream(limit)
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try / /stream.mjpg /stats /metrics\n")
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass  # the viewer went away, or stopped reading for CONNECTION_TIMEOUT_S

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, limit):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            min_gap = 1.0 / live.max_stream_fps if live.max_stream_fps else 0.0
            sequence, sent, last = 0, 0, 0.0
            live.hub.viewers += 1
            try:
                while not live.hub.closed and (not limit or sent < limit):
                    found = live.hub.wait_jpeg(sequence, timeout=2.0, annotated=True)  # never a raw frame
                    if found is None:
                        continue
                    sequence, data = found
                    self.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(
                        BOUNDARY, len(data)).encode("ascii") + data + b"\r\n")
                    self.wfile.flush()
                    sent += 1
                    wait = min_gap - (time.monotonic() - last)
                    if wait > 0:
                        time.sleep(wait)
                    last = time.monotonic()
            finally:
                live.hub.viewers -= 1

    return Handler


def render_page(title):
    return PAGE.replace("{{title}}", _escape(title))


def _escape(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}} - live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:8px 16px;background:#222;font-size:18px}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
#view img{max-width:100%;min-width:320px;background:#000;display:block}
section{background:#1c1c1c;padding:12px;border-radius:6px;min-width:280px}
h2{font-size:15px;margin:0 0 8px 0;color:#9cf}
.bar{height:14px;background:#3a7;display:inline-block;vertical-align:middle}
.row{display:flex;align-items:center;gap:8px;margin:3px 0;font-size:14px}
.row .label{width:140px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.row .track{flex:1;background:#333;min-width:100px}
td{padding:2px 8px;font-size:14px} td.num{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:26px;font-weight:600}
small{color:#999}
</style></head>
<body><header>{{title}} &mdash; live classification <small id="stream-status">stream: connecting</small></header>
<main>
<div id="view"><img id="stream" src="stream.mjpg" alt="live stream"></div>
<section><h2>Top-5</h2><div id="top5"><small>waiting for the first frame</small></div></section>
<section><h2>Speed</h2>
<div><span class="big" id="fps">-</span> <small>FPS end-to-end (capture to output)</small></div>
<div><span class="big" id="network-fps">-</span> <small>FPS network-only (1000 / inference ms)</small></div>
<table><tbody>
<tr><td>frames</td><td class="num" id="frames">-</td></tr>
<tr><td>dropped</td><td class="num" id="dropped">-</td></tr>
<tr><td>latency p50 / p95 / p99</td><td class="num" id="latency">-</td></tr>
<tr><td>backend</td><td class="num" id="backend">-</td></tr>
</tbody></table></section>
<section><h2>Latency per stage (ms, p50 / p95)</h2><table><tbody id="stages"></tbody></table></section>
<section><h2>Memory</h2><table><tbody>
<tr><td>process RSS</td><td class="num" id="rss">-</td></tr>
<tr><td>GPU memory</td><td class="num" id="gpu-mem">-</td></tr>
<tr><td>MemAvailable</td><td class="num" id="mem-available">-</td></tr>
<tr><td>CPU</td><td class="num" id="cpu">-</td></tr>
</tbody></table></section>
</main>
<script>
function fmt(v, d){ return (v === null || v === undefined) ? "-" : Number(v).toFixed(d); }
function esc(s){ return String(s).replace(/[&<>"]/g, function(c){ return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]; }); }
function set(id, text){ document.getElementById(id).textContent = text; }
var img = document.getElementById("stream");
function streamStatus(){
  if (img.naturalWidth > 0) { set("stream-status", "stream: live " + img.naturalWidth + "x" + img.naturalHeight); }
}
img.addEventListener("load", streamStatus);
img.addEventListener("error", function(){ set("stream-status", "stream: lost, reconnecting");
  setTimeout(function(){ img.src = "stream.mjpg?t=" + Date.now(); }, 1000); });
function update(){
  fetch("stats", {cache: "no-store"}).then(function(r){ return r.json(); }).then(function(s){
    set("fps", fmt(s.fps_recent, 1)); set("network-fps", fmt(s.network_fps, 1));
    set("frames", s.frames); set("dropped", s.dropped);
    set("latency", fmt(s.latency_ms.p50, 2) + " / " + fmt(s.latency_ms.p95, 2) + " / " + fmt(s.latency_ms.p99, 2) + " ms");
    set("backend", s.backend + " " + s.precision);
    set("rss", fmt(s.rss_mb, 1) + " MB"); set("cpu", fmt(s.cpu_percent, 0) + " %");
    set("gpu-mem", s.gpu_mem_mb === null ? "n/a" : fmt(s.gpu_mem_mb, 1) + " MB");
    set("mem-available", fmt(s.memory.mem_available_mb, 0) + " MB");
    var rows = "";
    for (var name in s.stages_ms) { var st = s.stages_ms[name];
      rows += "<tr><td>" + esc(name) + "</td><td class='num'>" + fmt(st.p50, 2) + " / " + fmt(st.p95, 2) + "</td></tr>"; }
    document.getElementById("stages").innerHTML = rows;
    if (s.top && s.top.length) {
      var html = "";
      s.top.forEach(function(t){ var pct = 100 * t[1];
        html += "<div class='row top5-row'><span class='label'>" + esc(t[0]) + "</span><span class='track'><span class='bar' style='width:" +
                pct.toFixed(1) + "%'></span></span><span class='pct'>" + pct.toFixed(2) + "%</span></div>"; });
      document.getElementById("top5").innerHTML = html;
    }
    streamStatus();
  }).catch(function(){ set("stream-status", "stats: unreachable"); });
}
update(); setInterval(update, 500);
</script></body></html>
"""
