"""The libraries' own log lines (ONNX Runtime's, OpenCV's, FFmpeg's through OpenCV) kept to errors, so that
device-serve's, device-bench's and device-agent's lines are what a user reads; ``--log-level verbose|debug``
(jetson-inference's flag) lets them through. A value the user set in the environment is never overridden.

ONNX Runtime: ``SessionOptions.log_severity_level`` (0 verbose ... 3 error, 4 fatal) and the default logger's
severity; OpenCV: ``OPENCV_LOG_LEVEL``; FFmpeg inside OpenCV's videoio: ``OPENCV_FFMPEG_LOGLEVEL``, an AV_LOG_*
value (16 = AV_LOG_ERROR, 48 = AV_LOG_DEBUG). Both environment variables are read when OpenCV loads its
backends, so this runs first in each command's main().
"""
import os

ORT_SEVERITY_ENV = "SQUISHEDNETS_ORT_LOG_SEVERITY"
# jetson-inference's --log-level -> (ONNX Runtime severity, OpenCV level, FFmpeg AV_LOG level)
LEVELS = {"silent": (4, "SILENT", "-8"), "error": (3, "ERROR", "16"), "warning": (2, "WARNING", "24"),
          "success": (3, "ERROR", "16"), "info": (3, "ERROR", "16"), "verbose": (1, "INFO", "40"),
          "debug": (0, "DEBUG", "48")}
DEFAULT_LEVEL = "error"


def quiet_libraries(level=None, environ=None):
    """Set the libraries' log levels for ``level`` (a --log-level value; None: errors only) where the user has
    not set them; returns ONNX Runtime's severity."""
    environ = os.environ if environ is None else environ
    severity, opencv, ffmpeg = LEVELS.get(level or DEFAULT_LEVEL, LEVELS[DEFAULT_LEVEL])
    environ.setdefault("OPENCV_LOG_LEVEL", opencv)
    environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", ffmpeg)
    environ.setdefault(ORT_SEVERITY_ENV, str(severity))
    return int(environ[ORT_SEVERITY_ENV])


def ort_severity(environ=None):
    """The severity ONNX Runtime sessions are opened with (quiet_libraries set it; errors only otherwise)."""
    environ = os.environ if environ is None else environ
    try:
        return min(4, max(0, int(environ.get(ORT_SEVERITY_ENV, "3"))))
    except ValueError:
        return 3
