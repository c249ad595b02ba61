"""The engine options every device command takes: ``--backend``, ``--precision``, ``--calibration``,
``--workspace-mb`` and ``--cache-dir``. One definition, so device-serve, device-bench and device-agent accept the
same flags with the same meaning and the same checks (an INT8 engine needs its calibration folder in each).

    add_engine_options(parser)        # the argument group
    options = engine_options(args)    # checked; the keyword options open_backend takes
"""
import glob
import os

from contract.errors import DeviceError
from contract.precisions import PRECISIONS
from device.backends import BACKENDS
from engines.build import DEFAULT_WORKSPACE_MB

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
    group.add_argument("--cache-dir", default=None, metavar="DIR", help=cache_help)
    return group


def engine_options(args):
    """Check the group's values; return the keyword options for device.backends.open_backend
    (``workspace_mb``, ``calibration_dir``; only those given). Raises DeviceError naming the flag and the fix."""
    if args.backend not in BACKENDS:
        raise DeviceError("--backend {!r}: backend {!r} is not one of {}".format(
            args.backend, args.backend, ", ".join(BACKENDS)))
    if args.precision not in PRECISIONS:
        raise DeviceError("--precision {!r}: precision {!r} is not one of {}".format(
            args.precision, args.precision, ", ".join(PRECISIONS)))
    options = {}
    if args.workspace_mb is not None:
        if not MIN_WORKSPACE_MB <= args.workspace_mb <= MAX_WORKSPACE_MB:
            raise DeviceError("--workspace-mb {} must be between {} and {} (TensorRT builder scratch memory)".format(
                args.workspace_mb, MIN_WORKSPACE_MB, MAX_WORKSPACE_MB))
        options["workspace_mb"] = args.workspace_mb
    if args.calibration is not None:
        if not os.path.isdir(args.calibration):
            raise DeviceError("--calibration {} is not a folder: give a folder of images like those the model will "
                              "classify (e.g. its training images)".format(args.calibration))
        options["calibration_dir"] = args.calibration
    return options


def require_calibration(info, cache_dir, calibration_dir):
    """Before any TensorRT work: an INT8 engine needs ``--calibration DIR`` unless a calibration cache for this
    model is already in ``cache_dir`` (made by any TensorRT version; the build checks it is this one's)."""
    if calibration_dir:
        return
    from calibration.cache import calibration_paths
    pattern = calibration_paths(cache_dir, info, "*")[0]
    if not glob.glob(pattern):
        folder = os.path.dirname(pattern)
        raise DeviceError("--precision int8 on TensorRT needs a calibration set the first time: add --calibration DIR "
                          "(a folder of images like those the model will classify, e.g. its training images); its "
                          "cache in {} is reused afterwards. Or use --precision fp16 (no calibration)".format(folder))
