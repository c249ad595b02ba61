"""host-serve's ``/metrics``: Prometheus text written by prometheus_client, in its conventions (base units, ``_total``
counters, bounded label values: the route's template, never a raw path).

    host_serve_requests_total{method, route, status}      every answered request
    host_serve_request_duration_seconds{method, route}    a histogram of the time to the answer's start
    host_serve_reports_total{kind, outcome}               device reports: stored, duplicate, conflict, refused
    host_serve_model_files_total{file}                    generation files handed out (GET with a body)
    host_serve_generations                                the run's generations now
    host_serve_device_reports                             the reports stored in the run now

The middleware is plain ASGI (it wraps ``send``), so it never reads or buffers a request's body: the report
route's own bounded, timed read (host/serve/bodies.py) stays as it is.
"""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 (re-exported: the answer's media type)

#: seconds; host-serve answers in milliseconds unless a client is slow or a model file large
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    """One registry per application (tests make many apps in one process)."""

    def __init__(self, served_run):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("host_serve_requests", "Requests answered, by method, route template and status",
                                ("method", "route", "status"), registry=self.registry)
        self.duration = Histogram("host_serve_request_duration_seconds", "Time from a request to its answer's start",
                                  ("method", "route"), buckets=DURATION_BUCKETS, registry=self.registry)
        self.reports = Counter("host_serve_reports", "Device reports received, by kind and outcome",
                               ("kind", "outcome"), registry=self.registry)
        self.files = Counter("host_serve_model_files", "Generation files handed out, by file name", ("file",),
                             registry=self.registry)
        generations = Gauge("host_serve_generations", "Generations in the run", registry=self.registry)
        generations.set_function(lambda: _or_nan(lambda: len(served_run.reader().generations())))
        stored = Gauge("host_serve_device_reports", "Device reports stored in the run", registry=self.registry)
        stored.set_function(lambda: _or_nan(
            lambda: served_run.reader().db.execute("SELECT count(*) FROM device_reports").fetchone()[0]))

    def text(self) -> bytes:
        return generate_latest(self.registry)



class MeasuredRequests:
    """ASGI middleware (``app.add_middleware(MeasuredRequests, metrics=...)``): every HTTP request counted and
    timed into ``metrics`` (a ServeMetrics); the body is never touched."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), {"code": None}
        metrics = self.metrics

        async def sending(message):
            if message["type"] == "http.response.start" and status["code"] is None:
                status["code"] = message["status"]
                metrics.duration.labels(scope["method"], route_of(scope)).observe(time.monotonic() - started)
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.requests.labels(scope["method"], route_of(scope), str(status["code"] or 500)).inc()


def _or_nan(read) -> float:
    """``read()``, or NaN (Prometheus' "no value now") when the run cannot be read: /metrics always answers."""
    try:
        return float(read())
    except Exception:  # the run replaced (HTTPException 503), a locked or missing database
        return float("nan")


def route_of(scope) -> str:
    """The matched route's template (``/models/{generation}/{name}``), or ``unmatched``: a label value from a
    small fixed set, whatever paths clients send."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
