"""device-serve's settings: made once from the command line, every flag checked there, read-only afterwards.

``ServeSettings.from_args(args)`` is the one place a parsed ``argparse.Namespace`` is looked at: the ranges,
the input and outputs (jetson-inference's positional order), the camera form, the report address, the live
page's address (parsed once into ``http_address``), the stats file's folder, the token file and the engine
options (device.engine_options). Anything wrong is a DeviceError (a ContractError) with one line naming the
flag and the fix, before anything slow starts. The serve loop and its helpers read attributes of the result;
writing one raises AttributeError. Python >= 3.6.
"""
import math
import os

from contract.errors import DeviceError
from device.sources import SOURCE_HELP

MAX_SPOOL_LIMIT = 1000000  # ~2 KB a report: 2 GB of waiting reports at most

#: what the command line holds, copied as given (checked in from_args)
PLAIN_FLAGS = ("model", "sha256", "output_blob", "cache_dir", "camera", "loop", "realtime", "codec", "http", "display", "headless",
               "status_every", "top", "smoothing", "warmup", "frames", "duration", "stats_json", "report_to",
               "report_every", "spool_dir", "spool_limit", "device_id", "labels", "input_blob", "input_width",
               "input_height")
#: what from_args works out from the flags
DERIVED = ("engine", "source_text", "output_specs", "http_address", "token")


class ServeSettings(object):
    """device-serve's checked settings (see the module's docstring); attributes named as the flags, plus
    ``engine`` (EngineOptions), ``source_text`` (the input), ``output_specs`` (device.outputs.OutputSpec list),
    ``http_address`` ((host, port) or None) and ``token`` (from --token, --token-file or None)."""
    __slots__ = PLAIN_FLAGS + DERIVED

    def __init__(self, **values):
        missing = sorted(set(self.__slots__) - set(values))
        unknown = sorted(set(values) - set(self.__slots__))
        if missing or unknown:
            raise TypeError("ServeSettings: missing {}, unknown {}".format(missing, unknown))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("ServeSettings are read-only: make them again with ServeSettings.from_args")

    def __repr__(self):
        shown = ", ".join("{}={!r}".format(n, getattr(self, n)) for n in self.__slots__ if n != "token")
        return "ServeSettings({}, token={})".format(shown, "set" if self.token else None)

    @classmethod
    def from_args(cls, args):
        """Check every flag of ``args`` (device-serve's parsed command line); the settings, or DeviceError."""
        from device.engine_options import engine_options
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
        source_text, output_specs = input_and_outputs(args)
        check_camera(args.camera)
        http_address = None
        if args.http:
            from contract.address import parse_address
            http_address = parse_address(args.http)
        if args.report_to:  # the address checked before anything slow starts
            from device.reports import reports_url
            reports_url(args.report_to)
        if args.stats_json:
            check_writable_file(args.stats_json, "--stats-json")
        token = getattr(args, "token", None)
        if getattr(args, "token_file", None):
            from contract.tokens import read_private_token_file
            token = read_private_token_file(args.token_file)  # ContractError: one line, exit 2
        values = dict((name, getattr(args, name, None)) for name in PLAIN_FLAGS)
        input_loop = getattr(args, "input_loop", None)  # jetson-inference's --input-loop: -1 or N > 0 loops
        values["loop"] = bool(args.loop or (input_loop is not None and input_loop != 0))
        for flag, value in (("--input-width", values["input_width"]), ("--input-height", values["input_height"])):
            _in_range(flag, value, 16, 8192, "camera pixels")
        values.update(engine=engine, source_text=source_text, output_specs=output_specs, http_address=http_address,
                      token=token)
        return cls(**values)


def _in_range(flag, value, low, high, what, low_open=False):
    """Refuse ``value`` unless ``low <= value <= high`` (``low < value`` with ``low_open``); NaN and infinity
    are refused too (``nan <= 0`` is False, so a bare comparison would let them through)."""
    if value is None:
        return
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        raise DeviceError("{} {} must be {} {} and at most {} ({})".format(
            flag, value, "above" if low_open else "at least", low, high, what))


def check_camera(camera):
    """DeviceError unless ``--camera`` (None when not given) names a camera: an index, /dev/videoN,
    v4l2:///dev/videoN or csi://N."""
    if camera is not None and not (camera.isdigit() or camera.startswith(("csi://", "/dev/video", "v4l2:///dev/video"))):
        raise DeviceError("--camera {!r} is not a camera: give an index (0), /dev/videoN, v4l2:///dev/videoN or "
                          "csi://N".format(camera))


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


def input_and_outputs(args):
    """(the input's text, the device.outputs.OutputSpec list) from the positional INPUT [OUTPUT]
    (jetson-inference's order), --source/--camera and --output. With --source or --camera one positional is the
    output. Raises DeviceError naming the clash or what is missing."""
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
    return source_text, [parse_output(text) for text in outputs]
