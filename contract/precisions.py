"""The precision names every command and the engine cache use (TensorRT's builder modes), checked in one place.

``check_precision`` is the one validation of a precision name (device-serve, device-bench, device-agent's
EngineOptions, the backends and engines/build.py all call it); ``INT8_NEEDS_CALIBRATION`` is the one sentence of
the INT8 rule (TensorRT's implicit INT8 calibrates from images: IInt8EntropyCalibrator2, TensorRT developer
guide, "INT8 calibration"). Python >= 3.6.
"""
from contract.errors import DeviceError

PRECISIONS = ("fp32", "fp16", "int8")

#: The INT8 rule, as every refusal of it says it (followed by where the cache goes, or what else to do).
INT8_NEEDS_CALIBRATION = ("INT8 needs a calibration set: add --calibration DIR (a folder of images like those the "
                          "model classifies, e.g. its training images)")


def check_precision(precision, flag=None, error=DeviceError):
    """``precision`` when it is one of PRECISIONS; else ``error`` (a DeviceError subclass) naming it and the
    choices, prefixed with ``flag`` ("--precision 'fp64': ...") when a command-line flag gave it."""
    if precision not in PRECISIONS:
        text = "precision {!r} is not one of {}".format(precision, ", ".join(PRECISIONS))
        raise error("{} {!r}: {}".format(flag, precision, text) if flag else text)
    return precision
