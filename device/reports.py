"""Reports from a device to host-serve, through a bounded spool on disk.

Every report is written to the spool first (one JSON file per report, named by its sequence number,
written atomically), then delivered oldest first; a file leaves the spool only once the host has
answered 2xx. So a report that cannot be delivered waits on disk -- across restarts too -- and arrives
in order once the host is back. A resend after a lost answer is harmless: the host stores each
(device_id, spool_id, sequence) once. The sequence counter, the device id and the spool id live in the
spool folder, so a restarted device never reuses a sequence number.

A report is identified by (device_id, spool_id, sequence): ``spool_id`` is a random id made with the spool's
counter, and made anew whenever the counter cannot be read. So a device id used again with a fresh spool
(a reflashed board, a new container, ``--device-id NAME`` on two boxes) or a spool whose ``sequence`` file
was damaged starts a new series that can never be taken for the old one. If a host still finds a stored
report under the same identity with a different body, it keeps both and answers 409 (a conflict); the
reporter logs it and counts it (``reports_conflicts``).

Nothing stops delivery: a spool file that cannot be read as UTF-8 JSON is moved to ``rejected/``; a full
disk (ENOSPC) while a report is spooled is logged once, counted (``reports_unspooled``) and retried with the
next report, and the reporter keeps running.

Several processes may share one spool folder (the default folder is per user, so two device-serve on one
board do): the device id, the sequence counter and each report file are written under an exclusive
``fcntl`` lock on ``spool.lock`` (temporary files have unique names), so sequence numbers stay unique and
no write is lost; one process at a time delivers (``deliver.lock``, taken without waiting), oldest first.

The report schema is contract/report_schema.py (one place; host-serve's request models come from it).
"""
import errno
import glob
import json
import os
import re
import socket
import threading
import time
import uuid

from contract.errors import DeviceError
from contract.files import atomic_write, finite_json
from contract.report_schema import DEVICE_ID_PATTERN, MAX_REPORT_BYTES, REPORT_KINDS, SCHEMA_VERSION

try:
    import fcntl
except ImportError:  # not POSIX: one process per spool folder
    fcntl = None

DEFAULT_SPOOL_LIMIT = 1000
SPOOL_ID_PATTERN = r"^[0-9a-f]{16}$"


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
            handle = open(self.path, "a", encoding="utf-8")
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
            with open(path, encoding="utf-8") as handle:
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
        """(spool_id, the next sequence number), under ``self._lock``. A ``sequence`` file that is missing,
        unreadable or not a number, or a missing ``spool_id``, starts a new spool id: numbers counted again
        from there can never be taken for reports the host already has."""
        path = os.path.join(self.folder, "sequence")
        id_path = os.path.join(self.folder, "spool_id")
        damaged = False
        try:
            with open(path, "rb") as handle:
                last = int(handle.read().decode("ascii").strip())
            if last < 0:
                raise ValueError(last)
        except (IOError, OSError) as error:
            last = None
            damaged = getattr(error, "errno", None) != errno.ENOENT
        except ValueError:  # not ASCII, not a number
            last, damaged = None, True
        spool_id = _read_spool_id(id_path) if last is not None else None
        if spool_id is None:
            spool_id = uuid.uuid4().hex[:16]
            atomic_write(id_path, spool_id + "\n")
            if damaged:
                self.log("report spool {}: its sequence file cannot be read; numbering goes on under a new spool "
                         "id {}, so no report can be taken for an earlier one".format(self.folder, spool_id))
            last = last or 0
        pending = self.pending()
        if pending:
            last = max(last, _sequence_of(pending[-1]))
        atomic_write(path, "{}\n".format(last + 1))
        return spool_id, last + 1

    def pending(self):
        """Paths of the reports waiting, oldest first."""
        return sorted(glob.glob(os.path.join(self.folder, "report-*.json")), key=_sequence_of)

    def add(self, kind, body):
        """Give ``body`` a sequence number and the device id, write it to the spool; return the report."""
        if kind not in REPORT_KINDS:
            raise DeviceError("report kind {!r} is not one of {}".format(kind, ", ".join(REPORT_KINDS)))
        with self._lock:
            report = dict(body)
            spool_id, sequence = self._next_sequence()
            report.update({"schema": SCHEMA_VERSION, "device_id": self.device_id, "spool_id": spool_id,
                           "kind": kind, "sequence": sequence, "created_at": round(time.time(), 3)})
            text = json.dumps(finite_json(report), sort_keys=True)
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


def _read_spool_id(path):
    try:
        with open(path, "rb") as handle:
            text = handle.read(64).decode("ascii").strip()
    except (IOError, OSError, ValueError):
        return None
    return text if re.match(SPOOL_ID_PATTERN, text) else None


def _kind_of(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("kind")
    except (IOError, OSError, ValueError):
        return None


def _kept_by_host(detail):
    """Whether a 409 answer says the host stored the report as a conflict (host-serve: ``"stored": true``)."""
    try:
        answer = json.loads(detail)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("stored") is True


class DeliveryRefused(Exception):
    """The host answered but will not take the report (e.g. 401, 413, 422)."""

    def __init__(self, status, detail):
        Exception.__init__(self, "{} {}".format(status, detail))
        self.status = status
        self.detail = detail


class NotDelivered(Exception):
    """The address answered, but not as host-serve storing the report: a redirect (a captive portal, a web server
    in front), a path that is not host-serve's (404, 405), an answer without host-serve's ``stored``. The report
    stays in the spool; ``advice`` says what to check."""

    def __init__(self, status, advice):
        Exception.__init__(self, "{}: {}".format(status, advice))
        self.status = status
        self.advice = advice


class _NoRedirects(object):
    """urllib's redirect handler, refusing: a POST must never turn into a GET somewhere else (urllib follows
    302/303 by sending a GET, and a login page's 200 would then count as delivered)."""

    @staticmethod
    def handler():
        import urllib.request

        class Refuse(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                raise NotDelivered(code, "the address redirects to {}; reports are never sent after a redirect: "
                                         "check --report-to (host-serve's own address, e.g. http://HOST:8700)".format(
                                             headers.get("Location", "elsewhere")))
        return Refuse()


#: what host-serve answers a report it refuses as malformed: the only answers that set a report aside for good
MALFORMED = (400, 413, 422)


def post_json(url, text, token=None, timeout=5.0):
    """POST ``text`` (JSON) to ``url`` without following redirects; return (status, the answer parsed) when
    host-serve stored it (2xx with its own ``stored`` in the answer). Raises DeliveryRefused for what host-serve
    refuses (401, 403, 409, 429, and MALFORMED), NotDelivered when the address is not host-serve storing it
    (a redirect, 404/405, an answer that is not host-serve's), and OSError (URLError) when the host cannot be
    reached, answers 5xx or 408 (its body timeout, or a proxy's: sent again later)."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=text.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", "Bearer " + token)
    opener = urllib.request.build_opener(_NoRedirects.handler())
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(65536)
            status = response.status
    except urllib.error.HTTPError as error:
        detail = error.read(4096).decode("utf-8", "replace")
        if error.code in (404, 405):
            raise NotDelivered(error.code, "no host-serve reports there (HTTP {}): check --report-to (host-serve's "
                                           "address, e.g. http://HOST:8700)".format(error.code))
        if error.code == 408 or error.code >= 500:
            raise OSError("host answered {}: {}".format(error.code, detail[:200]))
        if 300 <= error.code < 400:
            raise NotDelivered(error.code, "the address answered {} (a redirect): check --report-to".format(error.code))
        raise DeliveryRefused(error.code, detail)
    try:
        answer = json.loads(body.decode("utf-8"))
    except ValueError:
        answer = None
    if not (200 <= status < 300 and isinstance(answer, dict) and "stored" in answer):
        raise NotDelivered(status, "the address answered {} but not as host-serve (no 'stored' in its answer): "
                                   "check --report-to".format(status))
    return status, answer


class Reporter(object):
    """Sends periodic reports (``snapshot()`` every ``interval_s``) and a final one, through the spool.

    Delivery runs on its own thread; when the host cannot be reached the reports wait and delivery is
    retried with back-off (up to ``max_backoff_s``). A report leaves the spool only when host-serve stored it and
    said so in its own answer (no redirect is followed; 404/405 and a 2xx that is not host-serve's keep it, with
    "check --report-to"); one host-serve refuses as malformed (400, 413, 422) is moved to ``rejected/`` and
    logged, so one bad file never blocks the rest; 408 and 5xx are sent again later.
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
        self.conflicts = 0
        self.unspooled = 0
        self.last_error = None
        self._spool_error = None
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
                "reports_conflicts": self.conflicts, "reports_unspooled": self.unspooled,
                "report_failed_attempts": self.failed_attempts, "report_error": self.last_error, "device_id": self.spool.device_id}

    def _run(self):
        backoff = 0.0
        next_report = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_report:
                self.spool_report("periodic", self.snapshot)
                next_report = now + self.interval_s
            try:
                delivered = self.flush()
            except Exception as error:  # (IOError, OSError...) the thread must outlive any one bad moment
                self._note_failure("delivering the spooled reports failed ({}: {}); trying again".format(
                    type(error).__name__, error))
                delivered = False
            if delivered:
                backoff = 0.0
                wait = next_report - time.monotonic()
            else:
                backoff = min(max(backoff * 2, 0.25), self.max_backoff_s)
                wait = min(backoff, next_report - time.monotonic())
            self._wake.wait(max(wait, 0.01))
            self._wake.clear()

    def spool_report(self, kind, body):
        """Write one report to the spool; ``body`` may be a callable that makes it. A report that cannot be
        written (a full disk, a folder gone read-only) is counted in ``unspooled`` and said once per cause;
        returns the report, or None."""
        try:
            report = self.spool.add(kind, body() if callable(body) else body)
        except (IOError, OSError) as error:
            self.unspooled += 1
            reason = "the disk is full" if getattr(error, "errno", None) == errno.ENOSPC else str(error)
            if reason != self._spool_error:
                self.log("report spool {}: a {} report could not be written ({}); measuring goes on and the "
                         "next report is tried{}".format(self.spool.folder, kind, reason,
                                                         ": free space there" if error.errno == errno.ENOSPC else ""))
            self._spool_error = reason
            return None
        except Exception as error:  # a snapshot that failed, a report over the size limit: said, not fatal
            self.unspooled += 1
            self.log("report spool {}: a {} report was not written ({}: {})".format(
                self.spool.folder, kind, type(error).__name__, error))
            return None
        if self._spool_error is not None:
            self.log("report spool {}: reports are written again".format(self.spool.folder))
            self._spool_error = None
        return report

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
                with open(path, "rb") as handle:
                    raw = handle.read()
            except (IOError, OSError):
                continue  # delivered meanwhile by another process sharing the spool, or unreadable for now
            try:
                text = raw.decode("utf-8")
                json.loads(text)
            except ValueError as error:  # not UTF-8 (bit rot, a file cut mid-character) or not JSON
                self._reject(path, "it is not a UTF-8 JSON report ({})".format(str(error)[:120]))
                continue
            try:
                post_json(self.url, text, self.token, self.timeout_s)
            except NotDelivered as miss:  # kept: the address, not the report, is wrong
                self._note_failure("reports to {} not delivered ({}); they wait in {}".format(
                    self.url, miss, self.spool.folder))
                return False
            except DeliveryRefused as refusal:
                if refusal.status == 409 and _kept_by_host(refusal.detail):
                    self._conflict(path, refusal)
                    continue
                if refusal.status in MALFORMED:
                    self._reject(path, "host refused it: {}".format(refusal))
                    continue
                self._note_failure("host refused the report ({}): {}; reports wait in {}".format(
                    refusal.status, "check --token" if refusal.status in (401, 403) else
                    "busy" if refusal.status == 429 else "not host-serve's answer: check --report-to",
                    self.spool.folder))
                return False
            except (OSError, ValueError) as error:
                self._note_failure("host {} unreachable ({}); reports wait in {}".format(
                    self.url, getattr(error, "reason", error), self.spool.folder))
                return False
            self._delivered(path)
        return True

    def _delivered(self, path):
        self.spool.remove(path)
        self.delivered += 1
        if self.last_error is not None:
            self.log("host {} reached again; delivering the spooled reports".format(self.url))
            self.last_error = None

    def _conflict(self, path, refusal):
        """The host holds another report under this one's (device_id, spool_id, sequence) and kept this one
        beside it: delivered, and said (two devices with one --device-id and a spool copied between them?)."""
        self.conflicts += 1
        self.log("host kept report {} as a conflict: it holds a different report under the same device id, "
                 "spool id and sequence (a spool folder copied to another device, or two devices with one "
                 "--device-id?); both are stored".format(os.path.basename(path)))
        self._delivered(path)

    def _note_failure(self, message):
        self.failed_attempts += 1
        if message != self.last_error:
            self.log(message)
        self.last_error = message

    def _reject(self, path, why):
        """Move a report that will never be delivered to ``rejected/`` (kept, said, counted)."""
        folder = os.path.join(self.spool.folder, "rejected")
        try:
            os.makedirs(folder, exist_ok=True)
            os.replace(path, os.path.join(folder, os.path.basename(path)))
        except (IOError, OSError) as error:
            if not os.path.exists(path):
                return  # another process sharing the spool moved or delivered it
            self._note_failure("report {} ({}) cannot be moved to {} ({}); it stays in the spool".format(
                os.path.basename(path), why, folder, error))
            return
        self.rejected += 1
        self.log("report {} set aside in {}: {}".format(os.path.basename(path), folder, why))

    def close(self, final_body=None, deadline_s=5.0):
        """Stop the periodic reports, spool the final one and try to deliver everything within ``deadline_s``;
        what is left stays in the spool for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=deadline_s)
        if final_body is not None:
            self.spool_report("final", final_body)
        end = time.monotonic() + deadline_s
        while True:
            try:
                delivered = self.flush()
            except Exception as error:
                self._note_failure("delivering the spooled reports failed ({}: {})".format(type(error).__name__, error))
                delivered = False
            if delivered:
                return True
            if time.monotonic() >= end:
                left = len(self.spool.pending())
                self.log("{} report(s) wait in {} for the next run".format(left, self.spool.folder))
                return False
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
