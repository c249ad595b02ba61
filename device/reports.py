"""Reports from a device to host-serve, through a bounded spool on disk.

Every report is written to the spool first (one JSON file per report, named by its sequence number,
written atomically), then delivered oldest first; a file leaves the spool only once the host has
answered 2xx. So a report that cannot be delivered waits on disk -- across restarts too -- and arrives
in order once the host is back. A resend after a lost answer is harmless: the host stores each
(device_id, sequence) once. The sequence counter and the device id live in the spool folder, so a
restarted device never reuses a sequence number.

Several processes may share one spool folder (the default folder is per user, so two device-serve on one
board do): the device id, the sequence counter and each report file are written under an exclusive
``fcntl`` lock on ``spool.lock`` (temporary files have unique names), so sequence numbers stay unique and
no write is lost; one process at a time delivers (``deliver.lock``, taken without waiting), oldest first.

The report schema is contract/report_schema.py (one place; host-serve's request models come from it).
"""
import glob
import json
import os
import re
import socket
import threading
import time
import uuid

from contract.errors import DeviceError
from contract.files import atomic_write
from contract.report_schema import DEVICE_ID_PATTERN, MAX_REPORT_BYTES, REPORT_KINDS, SCHEMA_VERSION

try:
    import fcntl
except ImportError:  # not POSIX: one process per spool folder
    fcntl = None

DEFAULT_SPOOL_LIMIT = 1000


def default_spool_dir():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "squishednets", "reports")


def reports_url(url):
    """``http://host:8700`` or ``http://host:8700/reports`` -> the POST address."""
    url = url.rstrip("/")
    if not re.match(r"^https?://", url):
        raise DeviceError("--report-to {!r} is not an http(s) URL; give e.g. http://HOST:8700".format(url))
    return url if url.endswith("/reports") else url + "/reports"


class FolderLock(object):
    """An exclusive lock between threads and processes: ``fcntl.flock`` on ``path`` (created if missing).
    ``with lock:`` waits for it; ``acquire(blocking=False)`` returns False at once when someone holds it."""

    def __init__(self, path):
        self.path = path
        self._thread_lock = threading.Lock()
        self._handle = None

    def acquire(self, blocking=True):
        if not self._thread_lock.acquire(blocking):
            return False
        if fcntl is None:
            return True
        try:
            handle = open(self.path, "a")
        except (IOError, OSError):
            self._thread_lock.release()
            raise
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except (IOError, OSError):
            handle.close()
            self._thread_lock.release()
            if blocking:
                raise
            return False
        self._handle = handle
        return True

    def release(self):
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
        self._thread_lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class ReportSpool(object):
    """Reports waiting for delivery, oldest first. Bounded: when ``limit`` reports wait, the oldest periodic
    report makes room (a final report is kept before any periodic one), ``evicted`` counts them, and the
    first eviction is logged with the fix."""

    def __init__(self, folder=None, limit=DEFAULT_SPOOL_LIMIT, device_id=None, log=print):
        self.folder = folder or default_spool_dir()
        self.limit = int(limit)
        self.log = log
        self.evicted = 0
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as error:
            raise DeviceError("report spool {} cannot be created ({}); give a writable --spool-dir".format(
                self.folder, error))
        self._lock = FolderLock(os.path.join(self.folder, "spool.lock"))
        self.delivery_lock = FolderLock(os.path.join(self.folder, "deliver.lock"))
        if device_id:
            self.device_id = device_id
        else:
            try:
                with self._lock:
                    self.device_id = self._stored_device_id()
            except (IOError, OSError) as error:
                raise DeviceError("report spool {} is not writable ({}); give a writable --spool-dir".format(
                    self.folder, error))
        if not re.match(DEVICE_ID_PATTERN, self.device_id):
            raise DeviceError("device id {!r} must be 1-128 letters, digits or . _ : -".format(self.device_id))

    def _stored_device_id(self):
        path = os.path.join(self.folder, "device_id")
        try:
            with open(path) as handle:
                stored = handle.read().strip()
            if stored:
                return stored
        except (IOError, OSError):
            pass
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "device"
        device_id = "{}-{}".format(host, uuid.uuid4().hex[:8])
        atomic_write(path, device_id + "\n")
        return device_id

    def _next_sequence(self):
        path = os.path.join(self.folder, "sequence")
        try:
            with open(path) as handle:
                last = int(handle.read().strip() or 0)
        except (IOError, OSError, ValueError):
            last = 0
        pending = self.pending()
        if pending:
            last = max(last, _sequence_of(pending[-1]))
        atomic_write(path, "{}\n".format(last + 1))
        return last + 1

    def pending(self):
        """Paths of the reports waiting, oldest first."""
        return sorted(glob.glob(os.path.join(self.folder, "report-*.json")), key=_sequence_of)

    def add(self, kind, body):
        """Give ``body`` a sequence number and the device id, write it to the spool; return the report."""
        if kind not in REPORT_KINDS:
            raise DeviceError("report kind {!r} is not one of {}".format(kind, ", ".join(REPORT_KINDS)))
        with self._lock:
            report = dict(body)
            report.update({"schema": SCHEMA_VERSION, "device_id": self.device_id, "kind": kind,
                           "sequence": self._next_sequence(), "created_at": round(time.time(), 3)})
            text = json.dumps(report, sort_keys=True)
            if len(text.encode("utf-8")) > MAX_REPORT_BYTES:
                raise DeviceError("report {} is {} bytes, over the host's limit of {}".format(
                    report["sequence"], len(text), MAX_REPORT_BYTES))
            self._make_room()
            atomic_write(os.path.join(self.folder, "report-{:012d}.json".format(report["sequence"])), text)
            return report

    def _make_room(self):
        pending = self.pending()
        while len(pending) >= self.limit:
            victim = None
            for path in pending:
                if _kind_of(path) != "final":
                    victim = path
                    break
            victim = victim or pending[0]
            self.remove(victim)  # another process may have delivered it meanwhile: gone is as good
            pending.remove(victim)
            self.evicted += 1
            if self.evicted == 1:
                self.log("report spool {} is full ({} reports waiting for the host): dropping the oldest periodic "
                         "reports; check --report-to and the host, or raise --spool-limit".format(
                             self.folder, self.limit))

    def remove(self, path):
        try:
            os.remove(path)
        except OSError:
            pass


def _sequence_of(path):
    match = re.search(r"report-(\d+)\.json$", path)
    return int(match.group(1)) if match else 0


def _kind_of(path):
    try:
        with open(path) as handle:
            return json.load(handle).get("kind")
    except (IOError, OSError, ValueError):
        return None


class DeliveryRefused(Exception):
    """The host answered but will not take the report (e.g. 401, 413, 422)."""

    def __init__(self, status, detail):
        Exception.__init__(self, "{} {}".format(status, detail))
        self.status = status
        self.detail = detail


def post_json(url, text, token=None, timeout=5.0):
    """POST ``text`` (JSON) to ``url``; return the HTTP status. Raises DeliveryRefused on 4xx and OSError
    (URLError) when the host cannot be reached or answers 5xx."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=text.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode("utf-8", "replace")
        if 400 <= error.code < 500:
            raise DeliveryRefused(error.code, detail)
        raise OSError("host answered {}: {}".format(error.code, detail))


class Reporter(object):
    """Sends periodic reports (``snapshot()`` every ``interval_s``) and a final one, through the spool.

    Delivery runs on its own thread; when the host cannot be reached the reports wait and delivery is
    retried with back-off (up to ``max_backoff_s``). A report the host refuses as malformed (4xx other
    than 401/403/429) is moved to ``rejected/`` and logged, so one bad file never blocks the rest.
    """

    def __init__(self, url, spool, snapshot, token=None, interval_s=10.0, log=print, max_backoff_s=30.0,
                 timeout_s=5.0):
        self.url = reports_url(url)
        self.spool = spool
        self.snapshot = snapshot
        self.token = token
        self.interval_s = float(interval_s)
        self.log = log
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.delivered = 0
        self.failed_attempts = 0
        self.rejected = 0
        self.last_error = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deliver_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="reporter", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def status(self):
        return {"report_to": self.url, "reports_delivered": self.delivered, "reports_waiting": len(self.spool.pending()),
                "reports_evicted": self.spool.evicted, "reports_rejected": self.rejected,
                "report_failed_attempts": self.failed_attempts, "report_error": self.last_error, "device_id": self.spool.device_id}

    def _run(self):
        backoff = 0.0
        next_report = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_report:
                self.spool.add("periodic", self.snapshot())
                next_report = now + self.interval_s
            if self.flush():
                backoff = 0.0
                wait = next_report - time.monotonic()
            else:
                backoff = min(max(backoff * 2, 0.25), self.max_backoff_s)
                wait = min(backoff, next_report - time.monotonic())
            self._wake.wait(max(wait, 0.01))
            self._wake.clear()

    def flush(self):
        """Deliver what waits, oldest first; True when the spool is empty (or only rejected reports were left)."""
        with self._deliver_lock:
            if not self.spool.delivery_lock.acquire(blocking=False):
                return False  # another process sharing this spool is delivering (ours too, oldest first)
            try:
                return self._deliver_pending()
            finally:
                self.spool.delivery_lock.release()

    def _deliver_pending(self):
        for path in self.spool.pending():
            try:
                with open(path) as handle:
                    text = handle.read()
            except (IOError, OSError):
                continue
            try:
                post_json(self.url, text, self.token, self.timeout_s)
            except DeliveryRefused as refusal:
                if refusal.status in (401, 403, 429):
                    self._note_failure("host refused the report ({}): {}".format(
                        refusal.status, "check --token" if refusal.status != 429 else "busy"))
                    return False
                self._reject(path, refusal)
                continue
            except (OSError, ValueError) as error:
                self._note_failure("host {} unreachable ({}); reports wait in {}".format(
                    self.url, getattr(error, "reason", error), self.spool.folder))
                return False
            self.spool.remove(path)
            self.delivered += 1
            if self.last_error is not None:
                self.log("host {} reached again; delivering the spooled reports".format(self.url))
                self.last_error = None
        return True

    def _note_failure(self, message):
        self.failed_attempts += 1
        if message != self.last_error:
            self.log(message)
        self.last_error = message

    def _reject(self, path, refusal):
        folder = os.path.join(self.spool.folder, "rejected")
        os.makedirs(folder, exist_ok=True)
        os.replace(path, os.path.join(folder, os.path.basename(path)))
        self.rejected += 1
        self.log("host refused report {} ({}): kept in {}".format(os.path.basename(path), refusal, folder))

    def close(self, final_body=None, deadline_s=5.0):
        """Stop the periodic reports, spool the final one and try to deliver everything within ``deadline_s``;
        what is left stays in the spool for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=deadline_s)
        if final_body is not None:
            self.spool.add("final", final_body)
        end = time.monotonic() + deadline_s
        while True:
            if self.flush():
                return True
            if time.monotonic() >= end:
                left = len(self.spool.pending())
                self.log("{} report(s) wait in {} for the next run".format(left, self.spool.folder))
                return False
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
