"""The engine options every device command takes: ``--backend``, ``--precision``, ``--calibration``,
``--workspace-mb`` and ``--cache-dir``. One definition, so device-serve, device-bench and device-agent accept the
same flags with the same meaning and the same checks (an INT8 engine needs its calibration folder in each).

    add_engine_options(parser)        # the argument group
    engine = engine_options(args)     # an EngineOptions, checked once; passed whole (open_backend(engine=...))

This module imports nothing of device.backends (which imports it): BACKENDS is defined here.
"""
import glob
import os

from contract.errors import DeviceError
from contract.precisions import INT8_NEEDS_CALIBRATION, PRECISIONS, check_precision
from engines.build import DEFAULT_WORKSPACE_MB

BACKENDS = ("auto", "onnxruntime", "tensorrt")

MIN_WORKSPACE_MB = 16
MAX_WORKSPACE_MB = 65536


def add_engine_options(parser, cache_help="models and engines (default $SQUISHEDNETS_CACHE or ~/.cache/squishednets)"):
    """Add the engine option group to ``parser``; returns the group."""
    group = parser.add_argument_group("engine", "which backend runs the model, and how TensorRT builds its engine")
    group.add_argument("--backend", default="auto", metavar="|".join(BACKENDS),
                       help="default auto: TensorRT where TensorRT, pycuda and a GPU are there, else ONNX Runtime")
    group.add_argument("--precision", default="fp32", metavar="|".join(PRECISIONS),
                       help="TensorRT builder precision (ONNX Runtime runs fp32; default %(default)s)")
    group.add_argument("--calibration", metavar="DIR", default=None,
                       help="image folder for INT8 calibration (TensorRT --precision int8; needed the first time, "
                            "its calibration cache in --cache-dir is reused afterwards)")
    group.add_argument("--workspace-mb", type=int, default=None, metavar="MB",
                       help="TensorRT builder workspace, {}-{} (default {})".format(
                           MIN_WORKSPACE_MB, MAX_WORKSPACE_MB, DEFAULT_WORKSPACE_MB))
    group.add_argument("--tactic-sources", default=None, metavar="LIST",
                       help="TensorRT tactic sources, as trtexec's --tacticSources: e.g. -CUDNN,-CUBLAS,-CUBLAS_LT "
                            "(less memory at build and run time on a 4 GB Jetson; default TensorRT's)")
    group.add_argument("--cache-dir", default=None, metavar="DIR", help=cache_help)
    return group


class EngineOptions(object):
    """How the device opens a model, checked once where it is made (each message names the flag and the fix).

    ``backend`` (BACKENDS), ``precision`` (PRECISIONS), ``calibration_dir`` (an image folder for INT8, or None),
    ``workspace_mb`` (TensorRT builder scratch memory in MB, or None for DEFAULT_WORKSPACE_MB), ``cache_dir``
    (models and engines; None: device.model_source.default_cache_dir()).
    """

    def __init__(self, backend="auto", precision="fp32", calibration_dir=None, workspace_mb=None, cache_dir=None,
                 tactic_sources=None):
        if backend not in BACKENDS:
            raise DeviceError("--backend {!r}: backend {!r} is not one of {}".format(
                backend, backend, ", ".join(BACKENDS)))
        check_precision(precision, "--precision")
        if workspace_mb is not None and not MIN_WORKSPACE_MB <= int(workspace_mb) <= MAX_WORKSPACE_MB:
            raise DeviceError("--workspace-mb {} must be between {} and {} (TensorRT builder scratch memory)".format(
                workspace_mb, MIN_WORKSPACE_MB, MAX_WORKSPACE_MB))
        if calibration_dir is not None and not os.path.isdir(calibration_dir):
            raise DeviceError("--calibration {} is not a folder: give a folder of images like those the model will "
                              "classify (e.g. its training images)".format(calibration_dir))
        self.backend = backend
        self.precision = precision
        self.calibration_dir = calibration_dir
        self.workspace_mb = None if workspace_mb is None else int(workspace_mb)
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else None
        from engines.build import parse_tactic_sources
        try:
            parse_tactic_sources(tactic_sources)  # checked here, once, with the other flags
        except Exception as error:
            raise DeviceError(str(error))
        self.tactic_sources = tactic_sources or None

    @classmethod
    def from_args(cls, args):
        """From the option group's parsed ``args`` (see :func:`add_engine_options`)."""
        return cls(args.backend, args.precision, args.calibration, args.workspace_mb, args.cache_dir,
                   getattr(args, "tactic_sources", None))

    def backend_options(self):
        """The keyword options open_backend's backends take: ``workspace_mb``, ``calibration_dir`` (only those
        given)."""
        options = {}
        if self.workspace_mb is not None:
            options["workspace_mb"] = self.workspace_mb
        if self.calibration_dir is not None:
            options["calibration_dir"] = self.calibration_dir
        if self.tactic_sources:
            options["tactic_sources"] = self.tactic_sources
        return options

    def require_calibration(self, info=None, cache_dir=None, every_model=False):
        """The one INT8 rule, before any TensorRT work: INT8 on TensorRT needs ``--calibration DIR``, unless a
        calibration cache for this model (``info``) is already in the cache folder -- which a follower of new
        generations (``every_model``: device-agent) can never count on. ONNX Runtime does not run INT8 (its
        backend says so)."""
        if self.precision != "int8" or self.backend == "onnxruntime" or self.calibration_dir:
            return
        if info is not None and getattr(info, "quantized", False):
            return  # Q/DQ: its own scales (engines/build.py precision_plan); nothing to calibrate
        if every_model:
            raise DeviceError("--precision int8: every new generation is calibrated afresh for TensorRT, so "
                              "each needs its set. " + INT8_NEEDS_CALIBRATION + "; or use --precision fp16 "
                              "(no calibration)")
        if info is not None:
            require_calibration(info, cache_dir or self.cache_dir, None)

    def to_dict(self):
        return {"backend": self.backend, "precision": self.precision, "calibration_dir": self.calibration_dir,
                "workspace_mb": self.workspace_mb, "cache_dir": self.cache_dir, "tactic_sources": self.tactic_sources}

    def __repr__(self):
        return "EngineOptions({})".format(", ".join("{}={!r}".format(k, v) for k, v in sorted(self.to_dict().items())))


def engine_options(args):
    """The option group's values as one checked :class:`EngineOptions`; DeviceError naming the flag and the fix."""
    return EngineOptions.from_args(args)


def require_calibration(info, cache_dir, calibration_dir):
    """Before any TensorRT work: an INT8 engine needs ``--calibration DIR`` unless a calibration cache for this
    model is already in ``cache_dir`` (made by any TensorRT version; the build checks it is this one's)."""
    if calibration_dir:
        return
    from calibration.cache import calibration_paths
    pattern = calibration_paths(cache_dir, info, "*")[0]
    if not glob.glob(pattern):
        folder = os.path.dirname(pattern)
        raise DeviceError("--precision int8 on TensorRT: " + INT8_NEEDS_CALIBRATION + " the first time; its cache "
                          "in {} is reused afterwards. Or use --precision fp16 (no calibration)".format(folder))
