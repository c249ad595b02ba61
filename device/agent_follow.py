"""device-agent's follow loop: poll host-serve for the generations it lists, run each new one's job once
(device.agent_job), remember it (device.agent_state) and deliver the reports through the spool, backing off
while the host is down. The command line is device.agent."""
import os
import re
import threading
import time

from contract.errors import DeviceError
from device.agent_job import benchmark_generation, fetch_generation
from device.agent_tables import answer_all
from device.agent_state import AgentState

LOCK_FILE = "agent.lock"
DEFAULT_INTERVAL_S = 30.0
MAX_BACKOFF_S = 300.0


def _log(message):
    print("device-agent: {}".format(message), flush=True)


def base_url(url):
    """``http://host:8700``, ``.../`` or ``.../generations`` -> ``http://host:8700``."""
    text = str(url).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", text):
        raise DeviceError("--follow {!r} is not host-serve's http(s) address; give e.g. http://HOST:8700".format(url))
    if text.endswith("/generations"):
        text = text[:-len("/generations")]
    return text


class Agent(object):
    """Measure every generation host-serve lists, once; see the module docstring."""

    def __init__(self, url, token, device_id=None, backend="auto", precision="fp32", batches=(1,), seconds=3.0,
                 warmup_s=0.2, cache_dir=None, spool_dir=None, report_to=None, log=_log, options=None, engine=None,
                 remeasure=None):
        """``engine``: the checked EngineOptions (device.engine_options) of the command line, used as it is;
        without one, ``backend``, ``precision``, ``cache_dir`` and ``options``' calibration_dir and
        workspace_mb make it."""
        from device.model_source import default_cache_dir
        from device.reports import Reporter, ReportSpool
        self.base = base_url(url)
        self.token = token
        self.remeasure = remeasure
        if engine is not None:
            backend, precision, cache_dir = engine.backend, engine.precision, engine.cache_dir
        self.backend = backend
        self.precision = precision
        self.batches = list(batches)
        self.seconds = float(seconds)
        self.warmup_s = float(warmup_s)
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
        self.log = log
        from device.engine_options import EngineOptions
        options = dict(options or {})
        self.engine = engine if engine is not None else EngineOptions(
            backend, precision, options.pop("calibration_dir", None), options.pop("workspace_mb", None), self.cache_dir)
        self.options = options  # what else open_backend takes (opt_batch, providers, ...)
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as error:
            raise DeviceError("cache dir {} cannot be created ({}); give a writable --cache-dir".format(
                self.cache_dir, error))
        self._lock = self._take_lock()
        self.spool = ReportSpool(spool_dir or os.path.join(self.cache_dir, "reports"), device_id=device_id, log=log)
        # what this device measured, kept per device id: a cache folder shared by two ids measures for each
        self.state = AgentState.for_device(self.cache_dir, self.spool.device_id)
        self.reporter = Reporter(report_to or self.base, self.spool, snapshot=dict, token=token, log=log)
        self.measured = 0
        self.failed = 0

    def _take_lock(self):
        try:
            import fcntl
        except ImportError:  # not on Linux: no guard
            return None
        handle = open(os.path.join(self.cache_dir, LOCK_FILE), "w", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            handle.close()
            raise DeviceError("another device-agent is using cache dir {}; stop it or give another --cache-dir".format(
                self.cache_dir))
        return handle

    def close(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def check_token(self, timeout=10.0):
        """Ask host-serve whether it takes this token (GET /reports?limit=1, behind it) before anything is
        measured: DeviceError at once for a refused token; an unreachable host or one without the endpoint
        is left to the follow loop (it backs off and tries again)."""
        import urllib.error
        import urllib.request
        request = urllib.request.Request(self.base + "/reports?limit=1", headers={
            "Authorization": "Bearer " + (self.token or ""), "User-Agent": "squishednets-device"})
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise DeviceError("host-serve {} refused the token ({}): give the token host-serve printed, with "
                                  "--token-file FILE (its first line) or ${}; nothing was measured".format(
                                      self.base, error.code, "SQUISHEDNETS_TOKEN"))
        except (urllib.error.URLError, OSError, ValueError):
            pass

    def requested(self):
        return {"backend": self.backend, "precision": self.precision, "batches": self.batches,
                "seconds": self.seconds, "follow": self.base}

    def list_new(self):
        """The generations host-serve lists that this device has not measured (or failed) yet, oldest first.
        Raises DeviceError when the host cannot be reached or does not answer a list."""
        from device.model_source import list_generations
        try:
            listed = list_generations(self.base)
        except DeviceError as error:
            raise DeviceError("host-serve {} cannot list generations: {}".format(self.base, error))
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as error:  # a garbage answer
            raise DeviceError("host-serve {} answered /generations with something that is not a list of "
                              "generations ({}: {})".format(self.base, type(error).__name__, str(error)[:120]))
        if not isinstance(listed, list):
            raise DeviceError("{}/generations did not answer a list: is it host-serve?".format(self.base))
        fresh = []
        for entry in listed:
            if not isinstance(entry, dict) or not entry.get("sha256") or entry.get("generation") is None:
                continue
            if not self.state.seen(AgentState.key(entry["sha256"], self.backend, self.precision)):
                fresh.append(entry)
        return sorted(fresh, key=lambda e: e["generation"])

    def model_url(self, entry):
        """The entry's ``model_url`` (the one key host-serve writes), absolute, without its fragment: the
        caller passes the entry's sha256 as ``expected_sha256``."""
        from urllib.parse import urldefrag, urljoin
        from contract.report_schema import MODEL_URL_KEY
        from contract.generation_files import generation_url_path
        relative = entry.get(MODEL_URL_KEY) or generation_url_path(entry["generation"])
        return urldefrag(urljoin(self.base + "/", relative))[0]

    def process(self, entry):
        """Fetch, benchmark and report one generation: "measured", "failed" (remembered, not retried) or
        "retry" (the download failed; tried again on the next poll)."""
        generation, sha256 = entry["generation"], entry["sha256"]
        key = AgentState.key(sha256, self.backend, self.precision)
        try:
            path = fetch_generation(self.model_url(entry), entry, self.cache_dir, self.log)
        except DeviceError as error:
            self.log("generation {}: {} (will try again)".format(generation, error))
            return "retry"
        self.log("generation {} ({}...): benchmarking on {} {}, batch {}, {} s".format(
            generation, sha256[:12], self.backend, self.precision, ",".join(str(b) for b in self.batches),
            self.seconds))
        try:
            result, body = benchmark_generation(path, entry, self.requested(), self.engine, self.batches,
                                                self.seconds, self.warmup_s, self.log, self.options, self.remeasure)
        except Exception as error:  # an engine that will not build or run: remember it, keep following
            message = str(error) if isinstance(error, DeviceError) else "{}: {}".format(type(error).__name__, error)
            self.state.mark("failed", key, {"generation": generation, "error": message[:2000],
                                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self.failed += 1
            self.log("generation {}: benchmark failed, not retried (delete its entry in {} to retry): {}".format(
                generation, self.state.path, message))
            return "failed"
        report = self.reporter.spool_report("benchmark", body)
        if report is None:  # the spool's disk is full (said by the reporter): measured again on the next poll
            return "retry"
        stats = body["stats"]
        self.state.mark("benchmarked", key, {"generation": generation, "fps": stats["fps"],
                                             "sequence": report["sequence"], "device_id": report["device_id"],
                                             "at": result["measured_at"]})
        self.measured += 1
        self.log("generation {}: {:.1f} img/s at batch 1, p50 {:.3f} ms{} (report {} of device {})".format(
            generation, stats["fps"], stats["latency_ms"]["p50"],
            "" if stats.get("stable", True) else ", UNSTABLE after {} measurements".format(stats.get("attempts")),
            report["sequence"], report["device_id"]))
        self.reporter.flush()
        return "measured"

    def deliver(self):
        """Send what waits in the spool; True when nothing is left."""
        delivered = self.reporter.flush()
        left = len(self.spool.pending())
        if left:
            self.log("{} report(s) wait in {} for the host".format(left, self.spool.folder))
        return delivered and not left

    def once(self, max_generations=None):
        """Measure what is listed now; 0 when all of it is measured and delivered, else 1."""
        self.reporter.flush()
        try:
            fresh = self.list_new()
        except DeviceError as error:
            self.log(str(error))
            self.deliver()
            return 1
        if max_generations is not None:
            fresh = fresh[:max_generations]
        if not fresh:
            self.log("nothing new on {}".format(self.base))
        outcomes = [self.process(entry) for entry in fresh]
        outcomes += ["measured" if o == "sent" else o for o in answer_all(self)]  # latency tables host-evolve asked for
        delivered = self.deliver()
        return 0 if delivered and all(outcome == "measured" for outcome in outcomes) else 1

    def follow(self, interval_s=DEFAULT_INTERVAL_S, max_generations=None, stop=None):
        """Poll every ``interval_s`` (back-off up to MAX_BACKOFF_S while the host is unreachable) until
        ``stop`` is set or ``max_generations`` have been measured; returns the exit status."""
        stop = stop or threading.Event()
        backoff, quiet = 0.0, False
        self.log("following {} every {} s (device {}, state {})".format(self.base, interval_s, self.spool.device_id,
                                                                         self.state.path))
        while not stop.is_set():
            self.reporter.flush()
            try:
                fresh = self.list_new()
            except DeviceError as error:
                backoff = min(max(backoff * 2, 1.0), max(MAX_BACKOFF_S, interval_s))
                if not quiet:
                    self.log("{}; retrying with back-off (up to {} s)".format(error, max(MAX_BACKOFF_S, interval_s)))
                quiet = True
                stop.wait(backoff)
                continue
            if quiet:
                self.log("host-serve {} reached again".format(self.base))
            backoff, quiet = 0.0, False
            for entry in fresh:
                if stop.is_set():
                    break
                self.process(entry)
                if max_generations is not None and self.measured + self.failed >= max_generations:
                    return 0 if self.deliver() and not self.failed else 1
            if not stop.is_set():
                answer_all(self)  # the latency tables host-evolve --latency-table device:ID asked this device for
            stop.wait(interval_s)
        self.deliver()
        return 0
