"""device-agent: the device follows the host. Watches host-serve for new generations, fetches each one
(sha256-checked), builds its engine (or ONNX Runtime session), benchmarks it as device-bench does and reports
the figures, tagged with the platform, through the on-disk report spool.

    device-agent --follow http://HOST:8700 --token-file F [--device-id ID] [--backend auto|onnxruntime|tensorrt]
                 [--precision fp32|fp16|int8 [--calibration DIR]] [--batch 1[,8]] [--seconds S] [--interval S] [--once]
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
import os
import signal
import sys
import threading

from contract.console import utf8_console
from contract.errors import ContractError, DeviceError
from contract.version import add_version
from device.agent_follow import DEFAULT_INTERVAL_S, Agent, base_url
from device.engine_options import add_engine_options, engine_options

TOKEN_ENV = "SQUISHEDNETS_TOKEN"


# -- the command --------------------------------------------------------------------------------
class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def get_args_parser():
    parser = _Parser(prog="device-agent", description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_version(parser, "device-agent")
    parser.add_argument("--follow", required=True, metavar="URL", help="host-serve's address, e.g. http://HOST:8700")
    parser.add_argument("--device-id", default=None,
                        help="this device's name in its reports (default: hostname + a suffix kept in the spool)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", default=None, help="host-serve's bearer token (also ${})".format(TOKEN_ENV))
    token.add_argument("--token-file", default=None, help="file whose first line is the token")
    parser.add_argument("--batch", default="1", help="batch sizes, e.g. 1 or 1,8 (1 is always measured; default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size (default 3)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per batch size (default 0.2)")
    parser.add_argument("--remeasure", type=int, default=None, metavar="N",
                        help="measure an unstable batch again up to N times (default 2, as device-bench; 0: never)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                        help="seconds between polls of host-serve (default %(default)s)")
    parser.add_argument("--once", action="store_true", help="measure what is listed now, deliver, exit")
    parser.add_argument("--max-generations", type=int, default=None, help="stop after measuring N generations")
    parser.add_argument("--spool-dir", default=None, help="spooled reports (default CACHE_DIR/reports)")
    parser.add_argument("--report-to", default=None, metavar="URL", help="where reports go (default the --follow URL)")
    add_engine_options(parser, cache_help="models, engines, state and spooled reports (default $SQUISHEDNETS_CACHE "
                                          "or ~/.cache/squishednets)")
    return parser


def _read_token(args):
    if args.token_file:
        from contract.tokens import read_private_token_file
        return read_private_token_file(args.token_file)  # ContractError (one line): exposed, unreadable, short
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
    if args.remeasure is not None and not 0 <= args.remeasure <= 10:
        raise _UsageError("--remeasure must be between 0 and 10 (got {})".format(args.remeasure))
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
    if argv is None:  # the real command: a --token leaves /proc/PID/cmdline before anything else happens
        from device.hidden_token import move_token_off_the_command_line
        move_token_off_the_command_line("device.agent")
    utf8_console()  # labels are UTF-8 whatever the locale (contract.console)
    from device.library_logs import quiet_libraries
    quiet_libraries()  # ONNX Runtime's, OpenCV's and FFmpeg's own warnings: errors only (device/library_logs.py)
    from device.hidden_token import said_token_moved
    said_token_moved("device-agent", lambda message: print(message, file=sys.stderr, flush=True))
    agent = None
    try:
        args = get_args_parser().parse_args(argv)
        batches, token = _checked(args)
        engine = engine_options(args)
        engine.require_calibration(every_model=True)  # the one INT8 rule, for a follower of new generations
        agent = Agent(args.follow, token, args.device_id, batches=batches, seconds=args.seconds,
                      warmup_s=args.warmup, spool_dir=args.spool_dir, report_to=args.report_to, engine=engine,
                      remeasure=args.remeasure)
        agent.check_token()  # a wrong token is said now, not after every benchmark
    except (_UsageError, ContractError) as error:
        print("device-agent: error: {}".format(error), file=sys.stderr)
        if agent is not None:
            agent.close()
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
