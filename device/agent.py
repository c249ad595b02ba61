"""device-agent: the device follows the host. Watches host-serve for new generations, fetches each one
(sha256-checked), builds its engine (or ONNX Runtime session), benchmarks it as device-bench does and reports
the figures, tagged with the platform, through the on-disk report spool.

    device-agent --follow http://HOST:8700 --token-file F [--device-id ID] [--backend auto|onnxruntime|tensorrt]
                 [--precision fp32|fp16|int8] [--batch 1[,8]] [--seconds S] [--interval S] [--once]
                 [--max-generations N] [--cache-dir D]

A generation is benchmarked once per (sha256, backend, precision): the agent remembers what it did in
``<cache-dir>/agent-state.json``, so a restart does not measure again. Each measurement becomes one report of
kind ``benchmark`` (device/reports.py) whose ``stats.fps`` is the batch-1 throughput with host-device copies;
host-serve stores it in lineage.sqlite, where ``Lineage.device_fps()`` reads it. Reports go to the spool
first (``<cache-dir>/reports``), so a host that is down loses nothing: they arrive when it is back.

Exit status: 0 done (``--once``: everything listed is measured and delivered; following: stopped after
``--max-generations``); 1 something is left for the next run (host unreachable, a report waits in the spool,
a generation failed to build or run); 2 bad arguments; 130 interrupted.
"""
import argparse
import json
import os
import re
import signal
import sys
import threading
import time

from contract.errors import ContractError, DeviceError

STATE_FILE = "agent-state.json"
LOCK_FILE = "agent.lock"
STATE_SCHEMA = 1
DEFAULT_INTERVAL_S = 30.0
MAX_BACKOFF_S = 300.0
TOKEN_ENV = "SQUISHEDNETS_TOKEN"


def _log(message):
    print("device-agent: {}".format(message), flush=True)


# -- the platform a figure was measured on ------------------------------------------------------
def platform_of(described, precision):
    """The ``platform`` of a report: the machine (device.machine.platform_info), the GPU's name, the
    backend, precision and versions the figures were measured with, and the power mode where known."""
    from device.machine import nvml_gpu_name, platform_info, power_mode
    info = platform_info()
    gpu_name = (described.get("gpu") or {}).get("name")
    if gpu_name is None and described.get("backend") == "onnxruntime":
        providers = described.get("providers") or []
        if providers and providers[0] != "CPUExecutionProvider":
            gpu_name = nvml_gpu_name()
    info.update({"gpu_name": gpu_name, "device": described.get("device"), "backend": described.get("backend"),
                 "precision": precision, "versions": described.get("versions", {}),
                 "providers": described.get("providers"), "power_mode": power_mode()})
    return info


# -- the report ---------------------------------------------------------------------------------
def benchmark_report(result, entry, requested):
    """The body of a ``benchmark`` report for device.bench.bench_model's ``result`` on generation ``entry``.

    ``stats``: ``fps`` (batch-1 throughput with host-device copies, images/s), ``frames`` (timed batch-1
    runs), ``latency_ms`` {p50, p95, p99} (batch 1, with copies), ``network_fps`` / ``network_latency_ms``
    (network only), ``throughput_ips`` {batch: images/s} for every batch measured. ``bench`` is the whole
    result and ``platform`` says where it was measured."""
    by_batch = dict((r["batch"], r) for r in result["results"])
    if 1 not in by_batch:
        raise DeviceError("the benchmark has no batch-1 figure; the report's fps is defined at batch 1")
    one = by_batch[1]
    copies, network = one["with_copies"], one["network_only"]
    described = result["backend"]

    def three(latency):
        return dict((key, latency[key]) for key in ("p50", "p95", "p99"))
    stats = {"frames": int(copies["runs"]), "fps": float(copies["throughput_ips"]),
             "latency_ms": three(copies["latency_ms"]), "batch": 1, "seconds": copies["seconds"],
             "network_fps": float(network["throughput_ips"]), "network_latency_ms": three(network["latency_ms"]),
             "throughput_ips": dict((str(b), by_batch[b]["with_copies"]["throughput_ips"]) for b in sorted(by_batch))}
    precision = described.get("precision", requested.get("precision"))
    return {"model_sha256": result["model_sha256"], "generation": entry.get("generation"),
            "backend": described.get("backend"), "precision": precision,
            "platform": platform_of(described, precision), "stats": stats, "bench": result,
            "requested": requested}


# -- what was measured already --------------------------------------------------------------------
class AgentState(object):
    """``{"schema": 1, "benchmarked": {key: {...}}, "failed": {key: {...}}}`` in one JSON file, rewritten
    atomically after every change; key = ``sha256|backend|precision``."""

    def __init__(self, path):
        self.path = path
        self.data = {"schema": STATE_SCHEMA, "benchmarked": {}, "failed": {}}
        try:
            with open(path) as handle:
                loaded = json.load(handle)
            if isinstance(loaded, dict):
                for section in ("benchmarked", "failed"):
                    if isinstance(loaded.get(section), dict):
                        self.data[section] = loaded[section]
        except (IOError, OSError):
            pass
        except ValueError as error:
            broken = path + ".broken"
            os.replace(path, broken)
            _log("state file {} was unreadable ({}); moved it to {} and starting afresh".format(path, error, broken))

    @staticmethod
    def key(sha256, backend, precision):
        return "{}|{}|{}".format(sha256, backend, precision)

    def seen(self, key):
        return key in self.data["benchmarked"] or key in self.data["failed"]

    def mark(self, section, key, record):
        self.data[section][key] = record
        tmp = self.path + ".partial"
        with open(tmp, "w") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


# -- the agent ----------------------------------------------------------------------------------
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
                 warmup_s=0.2, cache_dir=None, spool_dir=None, report_to=None, log=_log, options=None):
        from device.model_source import default_cache_dir
        from device.reports import Reporter, ReportSpool
        self.base = base_url(url)
        self.backend = backend
        self.precision = precision
        self.batches = list(batches)
        self.seconds = float(seconds)
        self.warmup_s = float(warmup_s)
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
        self.log = log
        self.options = dict(options or {})
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as error:
            raise DeviceError("cache dir {} cannot be created ({}); give a writable --cache-dir".format(
                self.cache_dir, error))
        self._lock = self._take_lock()
        self.state = AgentState(os.path.join(self.cache_dir, STATE_FILE))
        self.spool = ReportSpool(spool_dir or os.path.join(self.cache_dir, "reports"), device_id=device_id, log=log)
        self.reporter = Reporter(report_to or self.base, self.spool, snapshot=dict, token=token, log=log)
        self.measured = 0
        self.failed = 0

    def _take_lock(self):
        try:
            import fcntl
        except ImportError:  # not on Linux: no guard
            return None
        handle = open(os.path.join(self.cache_dir, LOCK_FILE), "w")
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
        relative = entry.get(MODEL_URL_KEY) or "/models/{}/model.onnx".format(entry["generation"])
        return urldefrag(urljoin(self.base + "/", relative))[0]

    def process(self, entry):
        """Fetch, benchmark and report one generation: "measured", "failed" (remembered, not retried) or
        "retry" (the download failed; tried again on the next poll)."""
        from device.bench import bench_model
        from device.model_source import resolve_model
        generation, sha256 = entry["generation"], entry["sha256"]
        key = AgentState.key(sha256, self.backend, self.precision)
        try:
            path = resolve_model(self.model_url(entry), cache_dir=self.cache_dir, expected_sha256=sha256,
                                 log=self.log)
        except DeviceError as error:
            self.log("generation {}: {} (will try again)".format(generation, error))
            return "retry"
        self.log("generation {} ({}...): benchmarking on {} {}, batch {}, {} s".format(
            generation, sha256[:12], self.backend, self.precision, ",".join(str(b) for b in self.batches),
            self.seconds))
        try:
            result = bench_model(path, self.backend, self.precision, self.batches, self.seconds, self.warmup_s,
                                 self.cache_dir, self.log, **self.options)
            if result["model_sha256"] != sha256:
                raise DeviceError("the cached model has sha256 {}, not {}".format(result["model_sha256"], sha256))
            body = benchmark_report(result, entry, self.requested())
            report = self.spool.add("benchmark", body)
        except Exception as error:  # an engine that will not build or run: remember it, keep following
            message = str(error) if isinstance(error, DeviceError) else "{}: {}".format(type(error).__name__, error)
            self.state.mark("failed", key, {"generation": generation, "error": message[:2000],
                                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self.failed += 1
            self.log("generation {}: benchmark failed, not retried (delete its entry in {} to retry): {}".format(
                generation, self.state.path, message))
            return "failed"
        stats = body["stats"]
        self.state.mark("benchmarked", key, {"generation": generation, "fps": stats["fps"],
                                             "sequence": report["sequence"], "device_id": report["device_id"],
                                             "at": result["measured_at"]})
        self.measured += 1
        self.log("generation {}: {:.1f} img/s at batch 1, p50 {:.3f} ms (report {} of device {})".format(
            generation, stats["fps"], stats["latency_ms"]["p50"], report["sequence"], report["device_id"]))
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
            stop.wait(interval_s)
        self.deliver()
        return 0


# -- the command --------------------------------------------------------------------------------
class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def get_args_parser():
    parser = _Parser(prog="device-agent", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--follow", required=True, metavar="URL", help="host-serve's address, e.g. http://HOST:8700")
    parser.add_argument("--device-id", default=None,
                        help="this device's name in its reports (default: hostname + a suffix kept in the spool)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", default=None, help="host-serve's bearer token (also ${})".format(TOKEN_ENV))
    token.add_argument("--token-file", default=None, help="file whose first line is the token")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"),
                        help="default auto: TensorRT where it is usable, else ONNX Runtime")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"), help="default fp32")
    parser.add_argument("--batch", default="1", help="batch sizes, e.g. 1 or 1,8 (1 is always measured; default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size (default 3)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per batch size (default 0.2)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                        help="seconds between polls of host-serve (default %(default)s)")
    parser.add_argument("--once", action="store_true", help="measure what is listed now, deliver, exit")
    parser.add_argument("--max-generations", type=int, default=None, help="stop after measuring N generations")
    parser.add_argument("--cache-dir", default=None,
                        help="models, engines, state and spooled reports (default $SQUISHEDNETS_CACHE or "
                             "~/.cache/squishednets)")
    parser.add_argument("--spool-dir", default=None, help="spooled reports (default CACHE_DIR/reports)")
    parser.add_argument("--report-to", default=None, metavar="URL", help="where reports go (default the --follow URL)")
    parser.add_argument("--workspace-mb", type=int, default=None, help="TensorRT builder workspace (default 256)")
    parser.add_argument("--calibration", default=None, help="image folder for INT8 calibration (TensorRT)")
    return parser


def _read_token(args):
    if args.token_file:
        from contract.tokens import read_token_file
        return read_token_file(args.token_file)  # ContractError (one line) when unreadable, empty or short
    token = args.token or os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise _UsageError("give host-serve's token with --token, --token-file or ${} (host-serve keeps it in "
                          "RUN/host-serve.token); the host refuses reports without it".format(TOKEN_ENV))
    return token


def _checked(args):
    from device.bench import parse_batches
    if not args.seconds > 0 or args.warmup < 0:
        raise _UsageError("--seconds must be > 0 and --warmup >= 0 (got {} and {})".format(args.seconds, args.warmup))
    if not args.interval > 0:
        raise _UsageError("--interval must be > 0 seconds (got {})".format(args.interval))
    if args.max_generations is not None and args.max_generations < 1:
        raise _UsageError("--max-generations must be at least 1 (got {})".format(args.max_generations))
    try:
        base_url(args.follow)
        if args.report_to:
            from device.reports import reports_url
            reports_url(args.report_to)
        batches = parse_batches(args.batch)
    except ContractError as error:
        raise _UsageError(str(error))
    if 1 not in batches:
        batches = [1] + batches
    return batches, _read_token(args)


def main(argv=None):
    agent = None
    try:
        args = get_args_parser().parse_args(argv)
        batches, token = _checked(args)
        options = {}
        if args.workspace_mb is not None:
            options["workspace_mb"] = args.workspace_mb
        if args.calibration is not None:
            options["calibration_dir"] = args.calibration
        agent = Agent(args.follow, token, args.device_id, args.backend, args.precision, batches, args.seconds,
                      args.warmup, args.cache_dir, args.spool_dir, args.report_to, options=options)
    except (_UsageError, ContractError) as error:
        print("device-agent: error: {}".format(error), file=sys.stderr)
        return 2
    try:
        if args.once:
            return agent.once(args.max_generations)
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())  # docker stop: finish the measurement, then exit
        return agent.follow(args.interval, args.max_generations, stop)
    except KeyboardInterrupt:
        print("device-agent: interrupted", file=sys.stderr)
        return 130
    finally:
        agent.close()


if __name__ == "__main__":
    sys.exit(main())
