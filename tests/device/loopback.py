"""A real HTTP server on a free loopback port for the device tests: ``start(Handler)`` -> (server, url)."""
import threading
from http.server import HTTPServer


def start(handler):
    """``handler`` (a BaseHTTPRequestHandler class) serving on 127.0.0.1 in a daemon thread; (server, its URL)."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:{}".format(server.server_address[1])


def stop(server):
    server.shutdown()
    server.server_close()
