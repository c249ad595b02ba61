"""jetson-inference's stream URIs, read as device-serve reads its sources and outputs.

jetson-inference's videoSource/videoOutput (docs/aux-streaming.md there) name a stream by URI, and imagenet
takes them as positional arguments: ``imagenet [options] input_URI [output_URI]``. The forms:

    input    csi://0   v4l2:///dev/video0   /dev/video0   rtsp://HOST:8554/path   file://clip.mp4   clip.mp4
             file://images/   images/   'images/*.jpg'   photo.jpg
    output   display://0   file://out.mp4   out.mp4 | out.avi | out.mkv   'out/%i.jpg'   out/   out.jpg

device-serve takes the same, plus a camera index (``0``) and ``synthetic`` as inputs. Streaming out over
RTP/RTSP/WebRTC is not built in: ``--http PORT`` serves the live page (MJPEG over HTTP) instead, and a
``rtp://`` input is refused with the RTSP form to use. Python 3.6, standard library only.
"""
import re

from contract.errors import DeviceError

GLOB_CHARACTERS = "*?["
STREAMING_SCHEMES = ("rtp", "rtmp", "webrtc", "udp")


def scheme_of(text):
    """The URI scheme of ``text`` in lower case ("" for a plain path)."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return match.group(1).lower() if match else ""


def strip_file_scheme(text):
    """``file://PATH`` -> ``PATH`` (``file:///abs`` -> ``/abs``, ``file://rel`` -> ``rel``), else ``text``."""
    return text[len("file://"):] if text.lower().startswith("file://") else text


def normalize_input(text):
    """A jetson-inference input URI as device-serve's own source text: ``file://X`` -> ``X``,
    ``v4l2:///dev/videoN`` -> ``/dev/videoN``; ``csi://N``, ``rtsp://`` and plain paths as given. An output
    URI (``display://``) or a streaming input (``rtp://``, ``webrtc://``) is a DeviceError with what to give."""
    text = str(text).strip()
    scheme = scheme_of(text)
    if scheme == "file":
        return strip_file_scheme(text)
    if scheme == "v4l2":
        device = text[len("v4l2://"):]
        if re.match(r"^/dev/video\d+$", device):
            return device
        raise DeviceError("source {!r}: a V4L2 camera is v4l2:///dev/videoN (three slashes), e.g. "
                          "v4l2:///dev/video0".format(text))
    if scheme == "display":
        raise DeviceError("source {!r} is an output: give it after the input, e.g. device-serve --model M "
                          "csi://0 display://0".format(text))
    if scheme in STREAMING_SCHEMES:
        raise DeviceError("source {!r}: {}:// input is not supported; give an rtsp://HOST:PORT/PATH stream, a "
                          "camera or a file".format(text, scheme))
    return text


def has_glob(text):
    """Whether ``text`` is a wildcard pattern (``images/*.jpg``) rather than a path."""
    return any(character in text for character in GLOB_CHARACTERS)
