"""device-serve: classify a live source with a generation's model, show it, measure it, report it.

    device-serve --model PATH|URL [INPUT [OUTPUT]] [--source SRC | --camera [ID|csi://N]] [--output OUTPUT]
                 [--backend auto|onnxruntime|tensorrt]
                 [--precision fp32|fp16|int8 [--calibration DIR]]
                 [--workspace-mb MB] [--cache-dir DIR] [--http [HOST:]PORT] [--report-to URL] [--token T]
                 [--frames N] [--duration S] [--headless] [--stats-json PATH] [--[no-]realtime]

INPUT/SRC: a video file, an image folder or pattern, rtsp://..., /dev/videoN, csi://N, a camera index, or synthetic,
in jetson-inference's URI forms too (file://, v4l2:///dev/videoN); OUTPUT: display://0, a video file, numbered
images (out/%i.jpg), a folder or one image (device/outputs.py). Positional as in jetson-inference's imagenet.
Bad input (missing model, unknown source, unreachable camera) ends with one line naming it and the fix,
exit status 2, no traceback.

Stopping: Ctrl-C (SIGINT), SIGTERM (docker stop, systemctl stop, kill) and SIGHUP (a dropped ssh session) end
the run the same way: the loop
finishes the frames in flight, --stats-json and the final report are written, and the exit status is 0 -- what
systemd counts as a clean stop without SuccessExitStatus= and docker shows as "Exited (0)". A signal that comes
before the first frame (while a model downloads, a network camera is being opened or an engine builds) ends
the run at once: 130 for SIGINT, 143 (128 + 15) for SIGTERM, 129 for SIGHUP, nothing to report yet.
"""
import argparse
import contextlib
import json
import math
import os
import re
import signal
import sys

from contract.console import utf8_console
from contract.errors import ContractError, DeviceError
from device.engine_options import add_engine_options, engine_options
from device.outputs import OUTPUT_HELP
from device.sources import SOURCE_HELP

EXIT_BAD_INPUT = 2

URI_HELP = """input and output, in jetson-inference's forms (positional, as in its imagenet):
  input   csi://0  v4l2:///dev/video0  /dev/video0  0  rtsp://HOST:8554/path  file://clip.mp4  clip.mp4
          images/  'images/*.jpg'  photo.jpg  synthetic            (or --source / --camera)
  output  display://0  out.mp4  out.avi  'out/%i.jpg'  out/  out.jpg (or --output; the live page: --http)

examples:
  device-serve --model http://HOST:8700/models/best/model.onnx csi://0 --http 0.0.0.0:8080
  device-serve --model model.onnx clip.mp4 labelled.mp4            record the demo, overlay drawn
  device-serve --model model.onnx 'photos/*.jpg' labelled/         label photos: a line and an image each
  device-serve --model model.onnx /dev/video0 display://0          a USB camera in a window
"""


def get_args_parser():
    parser = argparse.ArgumentParser(prog="device-serve", description=__doc__.split("\n\n")[0], epilog=URI_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a generation's model.onnx, or a host-serve URL "
                        "(http://HOST:8700/models/N/model.onnx, or /models/best/model.onnx); sha256-checked")
    parser.add_argument("input", nargs="?", metavar="INPUT", help="what to classify (as --source): " + SOURCE_HELP)
    parser.add_argument("output", nargs="?", metavar="OUTPUT", help="where the annotated frames also go: " +
                        OUTPUT_HELP.replace("%", "%%"))
    parser.add_argument("--sha256", help="the model's expected sha256 (checked before anything starts)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--source", help="what to classify: " + SOURCE_HELP)
    where.add_argument("--camera", nargs="?", const="0", metavar="ID|csi://N",
                       help="a camera: an index (default 0), /dev/videoN or csi://N")
    parser.add_argument("--output", dest="output_option", metavar="OUTPUT", help="as the positional OUTPUT")
    parser.add_argument("--loop", action="store_true", help="play a video file or image folder again at its end")
    parser.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                        help="play a video file at its own frame rate, as a camera would (the default with --http "
                             "or a window)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="decode a video file as fast as it goes (the default otherwise: benchmarks)")
    parser.add_argument("--codec", default="h264", choices=("h264", "h265"),
                        help="an rtsp:// source's video codec: picks the depayloader and decoder (default %(default)s)")
    parser.add_argument("--http", metavar="[HOST:]PORT",
                        help="serve the live page (MJPEG, top-5, fps, latency, memory), /stats and /metrics; "
                             "a bare port binds to loopback, 0.0.0.0:PORT shares it on the network")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--display", action="store_true",
                        help="insist on a window (the default wherever a display is there, as jetson-inference does)")
    window.add_argument("--headless", action="store_true",
                        help="never a window, even where a display is there (jetson-inference's --headless); the "
                             "console keeps its status line, one every --status-every seconds, not one per frame")
    parser.add_argument("--status-every", type=float, default=1.0, metavar="S",
                        help="seconds between status lines (0: none; default %(default)s)")
    parser.add_argument("--top", type=int, default=5,
                        help="how many classes the page and reports show (default %(default)s)")
    parser.add_argument("--smoothing", type=float, default=0.0,
                        help="moving average of the probabilities, 0 (off) to 0.99 (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=0.5, metavar="S",
                        help="seconds of backend warm-up before the first frame (default %(default)s)")
    parser.add_argument("--frames", type=int, help="stop after N classified frames")
    parser.add_argument("--duration", type=float, help="stop after S seconds")
    parser.add_argument("--stats-json", metavar="PATH", help="write the final figures here")
    parser.add_argument("--report-to", metavar="URL", help="host-serve's address, e.g. http://HOST:8700")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="F",
                       help="file whose first line is host-serve's bearer token (mode 600: a file other users may "
                            "read is refused)")
    token.add_argument("--token", help="host-serve's bearer token; prefer --token-file or SQUISHEDNETS_TOKEN (a "
                                       "token given here is moved off the command line at start, where ps shows it)")
    parser.add_argument("--report-every", type=float, default=10.0, metavar="S",
                        help="seconds between periodic reports (default %(default)s)")
    parser.add_argument("--spool-dir", help="where undelivered reports wait (default ~/.local/state/squishednets/"
                                            "reports)")
    parser.add_argument("--spool-limit", type=int, default=1000, help="most reports kept waiting (default "
                                                                       "%(default)s)")
    parser.add_argument("--device-id", help="this device's name in the reports (default: hostname + random "
                                            "suffix, kept in the spool folder)")
    add_engine_options(parser)
    return parser


MAX_SPOOL_LIMIT = 1000000  # ~2 KB a report: 2 GB of waiting reports at most


def _in_range(flag, value, low, high, what, low_open=False):
    """Refuse ``value`` unless ``low <= value <= high`` (``low < value`` with ``low_open``); NaN and infinity
    are refused too (``nan <= 0`` is False, so a bare comparison would let them through)."""
    if value is None:
        return
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        raise DeviceError("{} {} must be {} {} and at most {} ({})".format(
            flag, value, "above" if low_open else "at least", low, high, what))


def check_args(args):
    """Check every flag before anything starts; returns the checked EngineOptions (device.engine_options)."""
    engine = engine_options(args)
    _in_range("--frames", args.frames, 1, 10 ** 12, "frames to classify")
    _in_range("--duration", args.duration, 0, 10 * 365 * 86400, "seconds; leave it out to run until stopped",
              low_open=True)
    if not 1 <= args.top <= 100:
        raise DeviceError("--top {} must be between 1 and 100".format(args.top))
    _in_range("--report-every", args.report_every, 0, 86400, "seconds between periodic reports", low_open=True)
    _in_range("--spool-limit", args.spool_limit, 1, MAX_SPOOL_LIMIT, "reports kept waiting")
    _in_range("--warmup", args.warmup, 0, 600, "seconds of warm-up")
    _in_range("--status-every", args.status_every, 0, 86400, "seconds between status lines; 0 for none")
    if not (math.isfinite(args.smoothing) and 0.0 <= args.smoothing < 1.0):
        raise DeviceError("--smoothing {} must be in [0, 1): 0 is off, 0.8 steadies a flickering label".format(
            args.smoothing))
    resolve_input_output(args)
    if args.http:
        from contract.address import parse_address
        parse_address(args.http)
    if args.stats_json:
        check_writable_file(args.stats_json, "--stats-json")
    if getattr(args, "token_file", None):
        from contract.tokens import read_private_token_file
        args.token = read_private_token_file(args.token_file)  # ContractError: one line, exit 2
    return engine


def check_writable_file(path, flag):
    """DeviceError now, naming ``flag`` and the fix, when ``path`` could not be written at the end of the run
    (its folder missing or not writable by this user), instead of losing the figures after the whole run."""
    import tempfile
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DeviceError("{} {}: folder {} does not exist".format(flag, path, folder))
    if os.path.isdir(path):
        raise DeviceError("{} {} is a folder: give a file name in it, e.g. {}".format(
            flag, path, os.path.join(path, "stats.json")))
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-")
        probe.close()
    except (IOError, OSError) as error:
        raise DeviceError("{} {}: folder {} cannot be written by this user ({}); give a writable place".format(
            flag, path, folder, getattr(error, "strerror", None) or error))


def resolve_input_output(args):
    """Sets ``args.source_text`` and ``args.output_specs`` (device.outputs.OutputSpec list) from the positional
    INPUT [OUTPUT] (jetson-inference's order), --source/--camera and --output. With --source or --camera one
    positional is the output. Raises DeviceError naming the clash or what is missing."""
    from device.outputs import parse_output
    positional = [text for text in (args.input, args.output) if text is not None]
    flagged = args.source if args.source is not None else args.camera
    if flagged is not None:
        if len(positional) == 2:
            raise DeviceError("two inputs: {!r} and {} {!r}; give the input once (positional or --source/--camera), "
                              "then the output".format(positional[0], "--source" if args.source is not None
                                                       else "--camera", flagged))
        source_text, outputs = flagged, positional
    else:
        source_text, outputs = (positional[0] if positional else None), positional[1:]
    if source_text is None:
        raise DeviceError("nothing to classify: give an input (device-serve --model M INPUT [OUTPUT], or --source "
                          "SRC or --camera): {}".format(SOURCE_HELP))
    if args.output_option is not None:
        if outputs:
            raise DeviceError("two outputs: {!r} and --output {!r}; give one".format(outputs[0], args.output_option))
        outputs = [args.output_option]
    args.source_text = source_text
    args.output_specs = [parse_output(text) for text in outputs]
    return args


def model_title(info, model_argument):
    """What the page and console call the model: "generation 2 of RUN" (the generation from its metadata, the run
    from the path RUN/gen-XX/model.onnx), "generation 2 from HOST:PORT" for a host-serve URL, else the file or
    URL it was given by; never the cache's sha256 file name. (The run's name is not in the ONNX: equal weights
    make equal files, whatever folder they were written in.)"""
    text = str(model_argument).split("#", 1)[0].rstrip("/")
    generation = getattr(info, "generation", None)
    stated = (getattr(info, "metadata", None) or {}).get("run")  # contract.model_info.RUN_KEY, where an exporter says
    if generation is not None:
        if stated:
            return "generation {} of {}".format(generation, stated)
        if "://" in text:
            return "generation {} from {}".format(generation, text.split("://", 1)[1].split("/", 1)[0])
        folder = os.path.dirname(os.path.abspath(text))
        if re.match(r"^gen-\d+$", os.path.basename(folder)):
            return "generation {} of {}".format(generation, os.path.basename(os.path.dirname(folder)))
        return "generation {} ({})".format(generation, os.path.basename(text))
    return text if "://" in text else os.path.basename(text)


class Terminated(BaseException):  # like KeyboardInterrupt: no `except Exception` on the way may swallow it
    """SIGTERM or SIGHUP before the loop started: nothing measured yet, end at once. ``args[0]``: the signal's
    name, ``signum``: its number (the exit status is 128 + it)."""

    def __init__(self, name, signum=signal.SIGTERM):
        BaseException.__init__(self, name)
        self.signum = int(signum)


class StopOnSignal(object):
    """The SIGTERM handler: once the loop runs, it stops the loop (like Ctrl-C) so that the figures and the final
    report are still written; before that, it raises :class:`Terminated`. A repeated signal is only logged."""

    def __init__(self, log=print):
        self.log = log
        self.loop = None
        self.received = None

    def __call__(self, signum, frame=None):
        name = signal.Signals(signum).name
        if self.received is not None:
            self.log("device-serve: {} again; still finishing (the figures and the final report)".format(name))
            return
        self.received = name
        if self.loop is None:
            raise Terminated(name, signum)
        self.log("device-serve: {} received; finishing".format(name))
        self.loop.stop()

    def install(self, *signums):
        for signum in signums:
            signal.signal(signum, self)
        return self


def window_wanted(args, available=None):
    """jetson-inference's rule: the annotated frames go to a window wherever a display is there, unless
    --headless; --display (or a display://0 output) insists (device-serve says so and runs without one where
    there is no display)."""
    if getattr(args, "headless", False):
        return False
    if available is None:
        from device.loop import display_available
        available = display_available()
    return bool(available)


def realtime_wanted(args, window=None):
    """A video file plays at its own frame rate when asked (--realtime / --no-realtime), else when someone
    watches it (--http or a window): a live demo; unpaced otherwise, the figures of a benchmark."""
    if getattr(args, "realtime", None) is not None:
        return bool(args.realtime)
    if window is None:
        window = window_wanted(args) or getattr(args, "display", False)
    return bool(getattr(args, "http", None) or window)


def choose_preprocess(backend, log=print):
    """With TensorRT, preprocess on the GPU (into the engine's input buffer) when the kernel is available;
    otherwise, and on every other backend, on the CPU. Logs and returns which, and why."""
    enable = getattr(backend, "enable_gpu_preprocess", None)
    how = "on the CPU (contract.preprocess, OpenCV)"
    if enable is not None:
        ok, why = enable()
        how = "on the GPU: " + why if ok else "on the CPU, because " + why
    log("device-serve: preprocessing {}".format(how))
    return how


def check_against_reference(backend, log=print):
    """Once per opened backend (so once per built engine): its outputs on the reference images stored with the
    model's generation against ONNX Runtime's FP32 ones (contract.reference). Logs the agreement, and a warning
    when it is beyond the stated tolerance; returns the dict for --stats-json and the reports (None without a
    reference; {"error": ...} when the reference file cannot be used -- serving goes on either way)."""
    from contract.reference import agreement_line
    remembered = backend.remembered_reference_check()  # TensorRT: measured when this engine was built
    if remembered is not None:
        log("device-serve: check (when this engine was built): " + agreement_line(remembered))
        return remembered
    try:
        result = backend.check_reference()
        backend.remember_reference_check(result)
    except ContractError as error:
        log("device-serve: warning: no check against the reference outputs: {}".format(error))
        return {"error": str(error)}
    if result is None:
        log("device-serve: no reference outputs beside the model (reference.npz): its outputs are not checked")
        return None
    log("device-serve: check: " + agreement_line(result))
    if not result["ok"]:
        log("device-serve: warning: this {} {} backend classifies differently from the model's ONNX (ONNX Runtime "
            "FP32); expect other answers than host-evolve measured. Try --precision fp16 or fp32, or for INT8 a "
            "larger, more representative --calibration set".format(backend.name, backend.precision))
    return result


def serve(args, log=print, stopper=None):
    """Run device-serve with parsed ``args``; return the final figures (the --stats-json dict). ``stopper``: a
    :class:`StopOnSignal` to hand the loop to once it exists."""
    from device.loop import ServeLoop
    from device.reports import ReportSpool, Reporter
    from device.frame_reader import FrameReader
    from device.sources import open_source
    from device.machine import platform_info
    from device.telemetry import Telemetry

    engine = check_args(args)  # the engine options too (device.engine_options), the input and outputs
    source_text = args.source_text
    if args.camera is not None and not (args.camera.isdigit() or
                                        args.camera.startswith(("csi://", "/dev/video", "v4l2:///dev/video"))):
        raise DeviceError("--camera {!r} is not a camera: give an index (0), /dev/videoN, v4l2:///dev/videoN or "
                          "csi://N".format(args.camera))
    reporter = None
    if args.report_to:  # check the address before anything slow starts
        from device.reports import reports_url
        reports_url(args.report_to)

    # 1. the model, refused before anything starts if it is missing or not what was asked for
    from contract.model_info import ModelInfo
    from device.model_source import resolve_model
    model_path = resolve_model(args.model, cache_dir=args.cache_dir, expected_sha256=args.sha256)
    info = ModelInfo.from_onnx(model_path)
    # 2. the source: opened now, so a missing camera is a one-line error, not a hang after the engine build
    display = window_wanted(args)
    wants_display = args.display or any(spec.kind == "display" for spec in args.output_specs)
    if wants_display and not display:
        log("device-serve: {}, but {}; running without a window".format(
            "--display" if args.display else "display://", "--headless" if args.headless
            else "there is no display here (DISPLAY unset)"))
    source = open_source(source_text, loop=args.loop, log=log, codec=args.codec, realtime=realtime_wanted(args))
    if getattr(source, "fps", None):
        log("device-serve: {} plays at its own {:.3g} fps (--no-realtime: as fast as it decodes)".format(
            source_text, source.fps))
    reader = telemetry = None
    # every resource is closed on the way out, in reverse order of opening, whatever ends the run
    with contextlib.ExitStack() as resources:
        resources.callback(source.close)  # the reader closes it too when it exists; closing twice is harmless
        # 3. the backend (a TensorRT engine build can take minutes the first time; it is cached)
        from device.backends import open_backend
        backend = open_backend(model_path, engine=engine, max_batch=1, log=log)
        resources.callback(backend.close)
        title = model_title(info, args.model)
        log("device-serve: {} on {} ({} {}), {} classes, input {}x{}".format(
            title, source.describe(), backend.name, backend.precision,
            info.num_classes, info.spec.width, info.spec.height))
        for note in backend.feeding_notes(batch=1):  # what the model needs that frames are not as they come
            log("device-serve: " + note)
        outputs = open_outputs(args.output_specs, source, log)
        for output in outputs:
            resources.callback(output.close)
        preprocess_how = choose_preprocess(backend, log)
        if args.warmup > 0:
            backend.warmup(args.warmup)
        reference_check = check_against_reference(backend, log)
        telemetry = Telemetry(backend.name, backend.precision, info.sha256)
        resources.callback(telemetry.close)
        telemetry.set(source=source_text, model=os.path.basename(model_path), dropped=0,
                      preprocess=backend.preprocess_path, preprocess_note=preprocess_how,
                      paced=source_is_paced(source), reference_check=reference_check)
        platform = platform_info()
        base_report = {"model_sha256": info.sha256, "backend": backend.name, "precision": backend.precision,
                       "platform": platform}

        reader = FrameReader(source, log=log)
        resources.callback(reader.close)
        hub = None
        if args.http:
            from contract.address import parse_address
            from device.web import FrameHub, LiveServer
            host, port = parse_address(args.http)
            hub = FrameHub()
            live = LiveServer(host, port, lambda: _snapshot(telemetry, reader, reporter), hub,
                              title="squishednets: {}".format(title), log=log,
                              histograms=telemetry.histograms).start()
            resources.callback(live.close)
            log("device-serve: live page at {}".format(live.url))
        if args.report_to:
            spool = ReportSpool(args.spool_dir, limit=args.spool_limit, device_id=args.device_id, log=log)
            token = args.token or os.environ.get("SQUISHEDNETS_TOKEN")
            reporter = Reporter(args.report_to, spool,
                                lambda: _report_body(base_report, _snapshot(telemetry, reader, reporter)),
                                token=token, interval_s=args.report_every, log=log).start()
        loop = ServeLoop(backend, info.spec, info.labels, reader, telemetry, hub=hub, display=display,
                         top=args.top, smoothing=args.smoothing, frames=args.frames, duration_s=args.duration,
                         status_every_s=args.status_every or None, log=log, outputs=outputs,
                         overlay_fps=getattr(getattr(source, "spec", None), "kind", None) != "folder")
        if stopper is not None:
            stopper.loop = loop
        reader.start()
        loop.run()
        final = _snapshot(telemetry, reader, reporter)
        final["backend_info"] = _describe(backend)
    if reporter is not None:
        reporter.close(_report_body(base_report, final))
        final.update(reporter.status())
    figures = stats_json(final)
    if args.stats_json:
        from contract.files import atomic_write
        try:
            atomic_write(args.stats_json, json.dumps(figures, indent=2, sort_keys=True))
        except (IOError, OSError) as error:  # checked at start; a disk that filled since: the figures are logged
            log("device-serve: --stats-json {} could not be written ({}); the figures: {}".format(
                args.stats_json, error, json.dumps(figures, sort_keys=True)))
    log("device-serve: done: {frames} frames, {fps:.1f} FPS end-to-end (whole run), Network {network_fps:.1f} FPS, "
        "latency p50 {p50} ms, dropped {dropped}".format(p50=figures["latency_ms"]["p50"], **figures))
    return figures


def open_outputs(specs, source, log=print):
    """The writers of ``specs`` (display:// is the window, not a writer), and for an image-folder input the
    per-image result lines (device.outputs.ResultLog). A video output takes the input file's frame rate."""
    from device.outputs import ResultLog, open_output
    from device.sources import file_fps
    capture = getattr(source, "capture", None)
    fps = getattr(source, "fps", None) or (file_fps(capture) if capture is not None and not source.live else None)
    outputs = [open_output(spec, fps, log) for spec in specs if spec.kind != "display"]
    if getattr(getattr(source, "spec", None), "kind", None) == "folder":
        outputs.append(ResultLog(log))
    return outputs


def source_is_paced(source):
    """Whether ``source`` hands frames at its own clock (a camera, a stream, a video played in real time), so
    the end-to-end fps is capped by it: host-serve keeps such a figure (``live-paced``) apart from an unpaced
    one and from a benchmark."""
    return bool(getattr(source, "live", False) or getattr(source, "pacer", None) is not None)


def _snapshot(telemetry, reader, reporter):
    snapshot = telemetry.snapshot()
    if reader is not None:
        snapshot["dropped"] = reader.dropped
        snapshot["source_gaps"] = len(reader.gaps)
        snapshot["reconnecting"] = reader.reconnecting
        snapshot["skipped"] = getattr(reader.source, "skipped", 0)
        snapshot.update(source_stalls=reader.stalls, source_stalled=reader.stalled, source_corrupt=reader.corrupt,
                        source_read_errors=reader.read_errors)
    if reporter is not None:
        snapshot.update(reporter.status())
    return snapshot


def _report_body(base, snapshot):
    body = dict(base)
    stats = dict(snapshot)
    stats.pop("backend_info", None)
    body["stats"] = stats
    return body


def _describe(backend):
    try:
        return backend.describe()
    except Exception as error:  # a describe() failure must not lose the run's figures
        return {"error": str(error)}


def stats_json(snapshot):
    """The --stats-json figures (the contract keys of docs/serve.md first, then the rest of the snapshot)."""
    figures = {key: snapshot.get(key) for key in ("frames", "fps", "latency_ms", "stages_ms", "dropped", "rss_mb",
                                                  "gpu_mem_mb", "backend", "precision", "model_sha256")}
    for key, value in snapshot.items():
        figures.setdefault(key, value)
    if figures.get("first_frame_at") and figures.get("process_started_at"):
        figures["startup_s"] = round(figures["first_frame_at"] - figures["process_started_at"], 3)
    return figures


def main(argv=None):
    if argv is None:  # the real command: a --token leaves /proc/PID/cmdline before anything else happens
        from device.hidden_token import move_token_off_the_command_line
        move_token_off_the_command_line("device.serve")
    utf8_console()  # labels are UTF-8 whatever the locale (contract.console)
    args = get_args_parser().parse_args(argv)
    from device.hidden_token import said_token_moved
    said_token_moved("device-serve", _log)
    # OpenCV's own warnings (a camera that cannot be opened...) would repeat our one-line error in its words
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    stopper = StopOnSignal(log=_log).install(signal.SIGTERM)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # nohup's choice is kept
        stopper.install(signal.SIGHUP)
    # Ctrl-C is KeyboardInterrupt even where the shell started us with SIGINT ignored (a script's `cmd &`):
    # `kill -INT` is then still the documented way to stop, and it must not be ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from device.interruptible import exit_status  # ends at once if a camera open or a build is still running
    try:
        serve(args, log=_log, stopper=stopper)
    except ContractError as error:  # DeviceError included: a bad input, a bad address, an engine that won't build
        print("device-serve: error: {}".format(error), file=sys.stderr)
        return exit_status(EXIT_BAD_INPUT, argv is None)
    except Terminated as received:
        print("device-serve: {} before the first frame; nothing to report".format(received), file=sys.stderr)
        return exit_status(128 + received.signum, argv is None)
    except KeyboardInterrupt:
        print("device-serve: interrupted", file=sys.stderr)
        return exit_status(130, argv is None)
    return exit_status(0, argv is None)


def _log(message):
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
