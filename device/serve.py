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
import os
import re
import signal
import sys

from contract.console import utf8_console
from contract.errors import ContractError, DeviceError
from contract.files import finite_json
from contract.version import add_version
from contract.generation_files import LABELS_TXT, MODEL_ONNX, REFERENCE_NPZ, generation_url_path
from device.engine_options import add_engine_options
from device.outputs import OUTPUT_HELP
from device.sources import SOURCE_HELP

EXIT_BAD_INPUT = 2

URI_HELP = """input and output, in jetson-inference's forms (positional, as in its imagenet):
  input   csi://0  v4l2:///dev/video0  /dev/video0  0  rtsp://HOST:8554/path  file://clip.mp4  clip.mp4
          images/  'images/*.jpg'  photo.jpg  synthetic            (or --source / --camera)
  output  display://0  out.mp4  out.avi  'out/%i.jpg'  out/  out.jpg (or --output; the live page: --http)

examples:
  device-serve --model http://HOST:8700{best} csi://0 --http 0.0.0.0:8080
  device-serve --model {model} clip.mp4 labelled.mp4            record the demo, overlay drawn
  device-serve --model {model} 'photos/*.jpg' labelled/         label photos: a line and an image each
  device-serve --model {model} /dev/video0 display://0          a USB camera in a window
""".format(best=generation_url_path("best"), model=MODEL_ONNX)


def get_args_parser():
    parser = argparse.ArgumentParser(prog="device-serve", description=__doc__.split("\n\n")[0], epilog=URI_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser, "device-serve")
    parser.add_argument("--model", required=True, help="a generation's {}, or a host-serve URL "
                        "(http://HOST:8700{}, or {}); sha256-checked".format(
                            MODEL_ONNX, generation_url_path("N"), generation_url_path("best")))
    parser.add_argument("--output-blob", "--output_blob", dest="output_blob", metavar="NAME",
                        help="the model output that holds the class scores (jetson-inference's --output_blob; "
                             "default: the only one, or of several the floating-point scores)")
    jetson = parser.add_argument_group("jetson-inference's imagenet flags, taken as it takes them")
    jetson.add_argument("--labels", metavar="FILE", help="a {} (one label a line) to use instead of the model's "
                                                         "own".format(LABELS_TXT))
    jetson.add_argument("--input-blob", "--input_blob", dest="input_blob", metavar="NAME",
                        help="the model's input name: checked against the model (it has one input)")
    jetson.add_argument("--topK", "--topk", dest="top", type=int, default=argparse.SUPPRESS, help="as --top")
    jetson.add_argument("--input-loop", "--input_loop", dest="input_loop", type=int, metavar="N",
                        help="-1 or N > 0: play a file or folder again at its end (as --loop); 0: once")
    jetson.add_argument("--input-width", "--input_width", dest="input_width", type=int, metavar="W",
                        help="camera capture width (default 1280)")
    jetson.add_argument("--input-height", "--input_height", dest="input_height", type=int, metavar="H",
                        help="camera capture height (default 720)")
    jetson.add_argument("--input-rate", "--input_rate", dest="input_rate", type=float, metavar="FPS",
                        help="accepted for jetson-inference's scripts: the camera's own rate paces the loop")
    jetson.add_argument("--log-level", "--log_level", dest="log_level", metavar="LEVEL",
                        choices=("silent", "error", "warning", "success", "info", "verbose", "debug"),
                        help="accepted for jetson-inference's scripts: device-serve's lines are its own")
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


def check_args(args):
    """Every flag of ``args`` checked before anything starts: the read-only ServeSettings
    (device.serve_settings), or DeviceError naming the flag and the fix."""
    from device.serve_settings import ServeSettings
    return ServeSettings.from_args(args)


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
        log("device-serve: no reference outputs beside the model ({}): its outputs are not checked".format(
            REFERENCE_NPZ))
        return None
    log("device-serve: check: " + agreement_line(result))
    if not result["ok"]:
        log("device-serve: warning: this {} {} backend classifies differently from the model's ONNX (ONNX Runtime "
            "FP32); expect other answers than host-evolve measured. Try --precision fp16 or fp32, or for INT8 a "
            "larger, more representative --calibration set".format(backend.name, backend.precision))
    return result


def serve(settings, log=print, stopper=None):
    """Run device-serve with its checked ``settings`` (device.serve_settings.ServeSettings; a parsed
    ``argparse.Namespace`` is checked into one first); return the final figures (the --stats-json dict).
    ``stopper``: a :class:`StopOnSignal` to hand the loop to once it exists."""
    from device.serve_settings import ServeSettings
    if not isinstance(settings, ServeSettings):
        settings = ServeSettings.from_args(settings)
    s = settings
    # 1. the model, opened once (resolved, fetched, read, checked), refused before anything starts
    from device.model_source import open_model
    info = open_model(s.model, cache_dir=s.cache_dir, expected_sha256=s.sha256, output_name=s.output_blob, log=log)
    if info.output_note:
        log("device-serve: " + info.output_note)
    # 2. the source: opened now, so a missing camera is a one-line error, not a hang after the engine build
    take_jetson_inference_flags(s, info, log)
    display = open_display(s, log)
    from device.sources import open_source
    source = open_source(s.source_text, loop=s.loop, log=log, codec=s.codec, realtime=realtime_wanted(s),
                         width=s.input_width or 1280, height=s.input_height or 720)
    if getattr(source, "fps", None):
        log("device-serve: {} plays at its own {:.3g} fps (--no-realtime: as fast as it decodes)".format(
            s.source_text, source.fps))
    # every resource is closed on the way out, in reverse order of opening, whatever ends the run
    with contextlib.ExitStack() as resources:
        resources.callback(source.close)  # the reader closes it too when it exists; closing twice is harmless
        # 3. the backend (a TensorRT engine build can take minutes the first time; it is cached). A live source
        # does not stream meanwhile: it was opened to be checked and is closed until the backend is ready (a
        # camera left streaming fills its driver's buffers; an Argus session may time out during a long build)
        if source.live:
            source.close()
        from device.backends import open_backend
        backend = open_backend(info, engine=s.engine, max_batch=1, log=log)
        resources.callback(backend.close)
        if source.live:
            from device.sources import open_live
            open_live(source, log)
        title = model_title(info, s.model)
        log("device-serve: {} on {} ({} {}), {} classes, input {}x{}".format(
            title, source.describe(), backend.name, backend.precision,
            info.num_classes, info.spec.width, info.spec.height))
        for note in backend.feeding_notes(batch=1):  # what the model needs that frames are not as they come
            log("device-serve: " + note)
        outputs = open_outputs(s.output_specs, source, log)
        for output in outputs:
            resources.callback(output.close)
        run = Run(s, info, backend, source, title, resources, log)
        loop = run.loop(display, outputs)
        if stopper is not None:
            stopper.loop = loop
        run.reader.start()
        loop.run()
        final = run.snapshot()
        ending = source.end_note() if hasattr(source, "end_note") else None
        if ending:  # a video read past damaged frames, or ended before its last: said, and counted
            log("device-serve: " + ending)
            final["damaged_frames"] = source.damaged
        final["backend_info"] = _describe(backend)
        run.final = final  # what the ExitStack's final report sends
    return finish(s, run, final, log)


class Run(object):
    """What one device-serve run opens after its backend, in order: the preprocessing choice, the warm-up, the
    reference check, telemetry, the frame reader, the live page and the reporter; each closed through
    ``resources`` (a contextlib.ExitStack) on the way out."""

    def __init__(self, settings, info, backend, source, title, resources, log):
        from device.frame_reader import FrameReader
        from device.machine import platform_info
        from device.telemetry import Telemetry
        s, self.settings, self.backend, self.info, self.log = settings, settings, backend, info, log
        self.reporter = self.hub = None
        preprocess_how = choose_preprocess(backend, log)
        if s.warmup > 0:
            backend.warmup(s.warmup)
        reference_check = check_against_reference(backend, log)
        self.telemetry = Telemetry(backend.name, backend.precision, info.sha256)
        resources.callback(self.telemetry.close)
        self.telemetry.set(source=s.source_text, model=os.path.basename(info.path), dropped=0,
                           preprocess=backend.preprocess_path, preprocess_note=preprocess_how,
                           paced=source_is_paced(source), reference_check=reference_check)
        self.base_report = {"model_sha256": info.sha256, "backend": backend.name, "precision": backend.precision,
                            "platform": platform_info()}
        self.source = source
        self.reader = FrameReader(source, log=log)
        resources.callback(self.reader.close)
        if s.http_address:
            from device.web import FrameHub, LiveServer
            self.hub = FrameHub()
            live = LiveServer(s.http_address[0], s.http_address[1], self.snapshot, self.hub,
                              title="squishednets: {}".format(title), log=log,
                              histograms=self.telemetry.histograms).start()
            resources.callback(live.close)
            log("device-serve: live page at {}".format(live.url))
        if s.report_to:
            from device.reports import ReportSpool, Reporter
            spool = ReportSpool(s.spool_dir, limit=s.spool_limit, device_id=s.device_id, log=log)
            self.reporter = Reporter(s.report_to, spool, lambda: self.report_body(self.snapshot()),
                                     token=s.token or os.environ.get("SQUISHEDNETS_TOKEN"),
                                     interval_s=s.report_every, log=log).start()
            # the final report inside the ExitStack, first on the way out (before the reader and telemetry it
            # reads close): spooled whatever ends the run, an error or Ctrl-C in the loop included
            resources.callback(self.close_reporter)
        self.final = None  # the run's final figures, once serve() has them
        self.reporter_status = None

    def close_reporter(self):
        if self.reporter is None or self.reporter_status is not None:
            return
        final = self.final if self.final is not None else self.snapshot()
        self.reporter.close(self.report_body(final))
        self.reporter_status = self.reporter.status()

    def snapshot(self):
        return _snapshot(self.telemetry, self.reader, self.reporter)

    def report_body(self, snapshot):
        return _report_body(self.base_report, snapshot)

    def loop(self, display, outputs):
        from device.loop import ServeLoop
        s = self.settings
        return ServeLoop(self.backend, self.info.spec, self.info.labels, self.reader, self.telemetry, hub=self.hub,
                         display=display, top=s.top, smoothing=s.smoothing, frames=s.frames, duration_s=s.duration,
                         status_every_s=s.status_every or None, log=self.log, outputs=outputs,
                         overlay_fps=getattr(getattr(self.source, "spec", None), "kind", None) != "folder")


def take_jetson_inference_flags(settings, info, log):
    """jetson-inference's imagenet flags where they mean something here: ``--labels`` replaces the model's labels
    (as many as its classes), ``--input-blob`` is checked against the model's one input; a model without labels
    is said once (its answers are class numbers)."""
    from contract.model_info import read_labels_txt
    if settings.input_blob and settings.input_blob != info.input_name:
        raise DeviceError("--input-blob {}: the model's input is {!r}; give that (or leave the flag out: the model "
                          "has one input)".format(settings.input_blob, info.input_name))
    if settings.labels:
        try:
            labels = read_labels_txt(settings.labels)
        except (IOError, OSError) as error:
            raise DeviceError("--labels {}: cannot read it ({})".format(settings.labels,
                                                                       getattr(error, "strerror", None) or error))
        if info.num_classes and len(labels) != info.num_classes:
            raise DeviceError("--labels {}: {} label(s) for a model of {} classes; give the model's labels".format(
                settings.labels, len(labels), info.num_classes))
        info.labels = labels
    elif all(label == "class {}".format(i) for i, label in enumerate(info.labels)):
        log("device-serve: warning: the model names no labels (no metadata, no {} beside it): answers are "
            "class numbers; give --labels FILE".format(LABELS_TXT))


def open_display(settings, log):
    """Whether the frames go to a window (:func:`window_wanted`); says so when one was asked for and cannot be."""
    display = window_wanted(settings)
    wants_display = settings.display or any(spec.kind == "display" for spec in settings.output_specs)
    if wants_display and not display:
        log("device-serve: {}, but {}; running without a window".format(
            "--display" if settings.display else "display://", "--headless" if settings.headless
            else "there is no display here (DISPLAY unset)"))
    return display


def finish(settings, run, final, log):
    """The final report delivered (or spooled), --stats-json written, the last line; the figures."""
    if run.reporter is not None:
        run.close_reporter()  # done on the ExitStack's way out already; the figures take its status
        final.update(run.reporter_status)
    figures = stats_json(final)
    if settings.stats_json:
        from contract.files import atomic_write
        try:
            atomic_write(settings.stats_json, json.dumps(figures, indent=2, sort_keys=True))
        except (IOError, OSError) as error:  # checked at start; a disk that filled since: the figures are logged
            log("device-serve: --stats-json {} could not be written ({}); the figures: {}".format(
                settings.stats_json, error, json.dumps(figures, sort_keys=True)))
    for line in profiler_table(figures):
        log(line)
    log("device-serve: done: {frames} frames, {fps:.1f} FPS end-to-end (whole run), Network {network_fps:.1f} FPS, "
        "latency p50 {p50} ms, dropped {dropped}".format(p50=figures["latency_ms"]["p50"], **figures))
    return figures


def profiler_table(figures):
    """The exit summary's timing table, as jetson-inference's imagenet prints it (Pre-Process, Network,
    Post-Process, Total), in ms per frame: mean over the run (capture and the outputs are device-serve's own)."""
    stages = figures.get("stages_ms") or {}

    def mean(*names):
        values = [(stages.get(name) or {}).get("mean") for name in names]
        values = [value for value in values if value is not None]
        return sum(values) if values else None
    rows = [("Pre-Process", mean("preprocess")), ("Network", mean("infer")),
            ("Post-Process", mean("postprocess", "overlay")), ("Total", mean("preprocess", "infer", "postprocess",
                                                                             "overlay"))]
    if all(value is None for _, value in rows):
        return []
    lines = ["device-serve: timing (ms per frame, mean)"]
    lines += ["device-serve:   {:<13} {:>9}".format(name, "-" if value is None else "{:.3f}".format(value))
              for name, value in rows]
    return lines


def open_outputs(specs, source, log=print):
    """The writers of ``specs`` (display:// is the window, not a writer), and for an image-folder input the
    per-image result lines (device.outputs.ResultLog). A video output takes the input file's frame rate."""
    from device.outputs import ResultLog, open_output
    from device.sources import file_fps
    capture = getattr(source, "capture", None)
    fps = getattr(source, "fps", None) or (file_fps(capture) if capture is not None and not source.live else None)
    inputs = getattr(source, "paths", None)  # an image folder's files: kept apart, and never overwritten
    outputs = [open_output(spec, fps, log, inputs) for spec in specs if spec.kind != "display"]
    if getattr(getattr(source, "spec", None), "kind", None) == "folder":
        outputs.append(ResultLog(log, looping=bool(getattr(source, "loop", False))))
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
    """The --stats-json figures (the contract keys of docs/serve.md first, then the rest of the snapshot); a
    figure that is not finite is null (contract.files.finite_json: the file is JSON, never NaN)."""
    snapshot = finite_json(snapshot)
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
    # the libraries' own warnings (OpenCV's on a camera that cannot be opened, FFmpeg's, ONNX Runtime's on an old
    # opset) would precede or repeat our lines in their words: errors only, unless --log-level verbose|debug
    from device.library_logs import quiet_libraries
    quiet_libraries(args.log_level)
    stopper = StopOnSignal(log=_log).install(signal.SIGTERM)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # nohup's choice is kept
        stopper.install(signal.SIGHUP)
    # Ctrl-C is KeyboardInterrupt even where the shell started us with SIGINT ignored (a script's `cmd &`):
    # `kill -INT` is then still the documented way to stop, and it must not be ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from device.interruptible import exit_status  # ends at once if a camera open or a build is still running
    try:
        serve(check_args(args), log=_log, stopper=stopper)
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
