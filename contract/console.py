"""The console in UTF-8 whatever the locale.

A Jetson container without ``LANG`` runs Python 3.6 under the C/POSIX locale, whose ``sys.stdout`` encodes
ASCII: the first status line naming a label like "café" or "猫" raises UnicodeEncodeError and ends the run
(Python 3.7+ coerce the C locale to UTF-8; 3.6 does not, PEP 538). Every device command calls
:func:`utf8_console` first; Dockerfile.l4t sets ``LANG=C.UTF-8`` as well.
"""
import io
import sys


def _is_utf8(stream):
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "") == "utf8"


def utf8_stream(stream):
    """``stream`` if it already writes UTF-8 (or is not a text file over a byte buffer), else the same buffer
    re-wrapped to write UTF-8 (``errors="backslashreplace"``: a lone surrogate from a file name is shown,
    never raised). Keeps the stream's line buffering."""
    if stream is None or _is_utf8(stream) or not hasattr(stream, "buffer"):
        return stream
    reconfigure = getattr(stream, "reconfigure", None)  # Python 3.7+
    if reconfigure is not None:
        reconfigure(encoding="utf-8", errors="backslashreplace")
        return stream
    stream.flush()
    line_buffering = getattr(stream, "line_buffering", True)
    return io.TextIOWrapper(stream.detach(), encoding="utf-8", errors="backslashreplace",
                            line_buffering=line_buffering)


def utf8_console():
    """Make ``sys.stdout`` and ``sys.stderr`` write UTF-8 (see the module); idempotent."""
    sys.stdout = utf8_stream(sys.stdout)
    sys.stderr = utf8_stream(sys.stderr)
