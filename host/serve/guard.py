"""host-serve's guard against slow and idle clients, and its bounded log.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection whose request
headers never finish (slowloris), or that sends them a byte at a time, is kept for ever, and its concurrency
limit counts only requests that have begun. So a client holding ~1,000 such sockets exhausted host-serve's
file descriptors: nobody else was answered, and asyncio logged "socket.accept() out of system resource" in a
tight loop. :class:`GuardedH11Protocol` (uvicorn's h11 protocol, with two additions) answers that:

* **header timeout**: a connection must finish its request headers within ``HEADER_TIMEOUT_S`` of their
  first byte (or of connecting); otherwise it gets a 408 and is closed. Bodies have their own deadline
  (host/serve/app.py ``read_bounded_body``);
* **connection limit**: at most ``max_connections`` at once, below the process's open-file limit; a new
  connection beyond it closes the oldest connection that has no request in progress (idle or still
  sending headers), so clients that send whole requests keep being served while idle sockets pile up.

:class:`BoundedLog` lets each distinct log message through at most ``burst`` times a minute and then says
how many were held back, so no client can fill the disk through host-serve's log. Both are meant for a
server on loopback or a trusted network; in front of host-serve on an open network belongs a reverse proxy
(TLS, rate limits per client), see docs/serve.md.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 1000
FD_HEADROOM = 320  # files besides the connections: one accept burst (64), a read-only database connection per
# request thread (up to 40 threads x the database, its -wal and -shm), the served model files, the log
ACCEPT_BURST = 64  # connections asyncio accepts before the guard sees them (uvicorn's ``backlog``)


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """``wanted`` connections, or fewer so that they and FD_HEADROOM other files fit the open-file limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FD_HEADROOM))


class ConnectionGuard:
    """The limits and counters shared by every connection of one server."""

    def __init__(self, max_connections: int | None = None, header_timeout_s: float = HEADER_TIMEOUT_S,
                 log=None):
        self.max_connections = max_connections or connection_limit()
        self.header_timeout_s = header_timeout_s
        self.evicted = 0
        self.timed_out = 0
        self._log = log or logging.getLogger("host-serve").warning
        self._said_at = -1e9

    def note(self, what: str) -> None:
        """One line a minute at most about connections closed by the guard."""
        now = time.monotonic()
        if now - self._said_at >= 60:
            self._said_at = now
            self._log(f"host-serve: {what} (so far: {self.timed_out} timed out before their request was "
                      f"complete, {self.evicted} idle ones closed at the limit of {self.max_connections} "
                      f"connections)")

    def protocol(self):
        """The protocol class to give uvicorn.Config(http=...), bound to this guard."""
        guard = self

        class Bound(GuardedH11Protocol):
            pass
        Bound.guard = guard
        return Bound


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection limit (see the module docstring)."""

    guard: ConnectionGuard = ConnectionGuard(max_connections=MAX_CONNECTIONS)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._made_at = time.monotonic()
        self._header_timer = None
        self._arm_header_timer()
        if len(self.connections) > self.guard.max_connections:
            self._evict_one_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        elif self.conn.their_state is h11.IDLE:  # a request's headers begun, not finished
            self._arm_header_timer()  # armed once per request: dripping bytes does not extend it
        else:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_header_timer()  # idle now: uvicorn's keep-alive timeout applies

    # -- the header timeout -------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.guard.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE or self._busy():
            return
        self.guard.timed_out += 1
        self.guard.note("closed a connection whose request headers did not arrive in "
                        f"{self.guard.header_timeout_s:g} s")
        try:
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        finally:
            self.transport.close()

    # -- the connection limit -----------------------------------------------------------------------
    def _busy(self) -> bool:
        """A request is in progress on this connection (being read or answered)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _evict_one_idle(self) -> None:
        idle = [c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c is not self and not c._busy()
                and not c.transport.is_closing()]
        if not idle:
            self.guard.note("at the connection limit with every connection busy; refused a new one")
            self.transport.close()
            return
        oldest = min(idle, key=lambda c: c._made_at)
        self.guard.evicted += 1
        self.guard.note("at the connection limit; closed the oldest idle connection")
        oldest._cancel_header_timer()
        oldest.transport.close()


class BoundedLog(logging.Filter):
    """Lets each message (its format string) through ``burst`` times per ``window_s``; then, once the window
    is over, one line says how many were held back. Without exc_info past the first: one traceback a
    minute at most for the same cause."""

    def __init__(self, burst: int = 5, window_s: float = 60.0, clock=time.monotonic):
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._seen: dict[str, list] = {}  # message -> [window start, count, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = self.clock()
        window = self._seen.get(key)
        if window is None or now - window[0] >= self.window_s:
            held = window[2] if window else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 1000:  # many distinct messages: forget the old windows
                self._seen = {key: self._seen[key]}
            if held:
                record.msg = f"{record.msg} ({held} more like it in the last {self.window_s:g} s held back)"
            return True
        window[1] += 1
        if window[1] <= self.burst:
            return True
        window[2] += 1
        return False


def install_bounded_logging(burst: int = 5, window_s: float = 60.0) -> BoundedLog:
    """A :class:`BoundedLog` on the loggers a client can make speak (uvicorn's and asyncio's)."""
    bounded = BoundedLog(burst, window_s)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "host-serve"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, BoundedLog) for f in logger.filters):
            logger.addFilter(bounded)
    return bounded
