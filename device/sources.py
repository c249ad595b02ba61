"""Frame sources for device-serve: cameras, CSI, V4L2, RTSP, video files, image folders, a synthetic scene.

Python 3.6, numpy and OpenCV only. Two reading modes, chosen by the source:

* live sources (a camera, ``csi://N``, ``/dev/videoN``, ``rtsp://``) are read by a thread that keeps only
  the newest frame and counts the ones the loop never took (``dropped``): a slow loop shows old frames
  never, lag never grows. A lost camera is reopened with back-off and the gap is logged.
* recorded sources (a video file, an image folder, ``synthetic``) are read in lock-step through a short
  queue: nothing is dropped, so a measurement over a file is the loop's own speed. The end of the file
  ends the run cleanly (or starts it again with ``loop=True``).

The thread that reads them, :class:`device.frame_reader.FrameReader`, is in its own module.
"""
import glob
import math
import os
import re

import numpy as np

from contract.errors import DeviceError
from contract.images import IMAGE_EXTENSIONS, read_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264", ".h265", ".ts",
                    ".mjpeg", ".mjpg", ".wmv", ".flv", ".gif")
SOURCE_HELP = ("a camera index (0), csi://N, /dev/videoN or v4l2:///dev/videoN, rtsp://..., a video file, an "
               "image folder or pattern ('images/*.jpg'), one image, file://..., or 'synthetic'")


# -- parsing ----------------------------------------------------------------------------------
class SourceSpec(object):
    """What a source argument means: ``kind`` in camera, csi, v4l2, rtsp, file, folder, synthetic."""

    LIVE_KINDS = ("camera", "csi", "v4l2", "rtsp")

    def __init__(self, kind, target, text):
        self.kind = kind
        self.target = target
        self.text = text

    @property
    def live(self):
        return self.kind in self.LIVE_KINDS

    def __repr__(self):
        return "SourceSpec({!r}, {!r})".format(self.kind, self.target)


def parse_source(text):
    """Map a ``--source`` / ``--camera`` argument to a :class:`SourceSpec`; raise DeviceError if unknown.
    jetson-inference's URIs (``file://``, ``v4l2:///dev/videoN``: device/uris.py) are read as their paths."""
    from device.uris import has_glob, normalize_input
    text = normalize_input(text)
    if not text:
        raise DeviceError("the source is empty: give " + SOURCE_HELP)
    if text == "synthetic":
        return SourceSpec("synthetic", None, text)
    if re.match(r"^\d+$", text):
        return SourceSpec("camera", int(text), text)
    match = re.match(r"^csi://(\d+)$", text)
    if match:
        return SourceSpec("csi", int(match.group(1)), text)
    if text.startswith("csi://"):
        raise DeviceError("source {!r}: a CSI camera is csi://N with N the sensor id, e.g. csi://0".format(text))
    match = re.match(r"^/dev/video(\d+)$", text)
    if match:
        return SourceSpec("v4l2", text, text)
    if re.match(r"^rtsps?://", text):
        return SourceSpec("rtsp", text, text)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise DeviceError("source {!r}: unknown scheme; use {}".format(text, SOURCE_HELP))
    if os.path.isdir(text):
        return SourceSpec("folder", text, text)
    if has_glob(text) and not os.path.exists(text):
        if not glob.glob(text):
            raise DeviceError("source {!r}: no file matches the pattern; check the folder and the quotes (the shell "
                              "must not expand it: 'images/*.jpg')".format(text))
        return SourceSpec("folder", text, text)  # images/*.jpg: the images it matches
    if os.path.isfile(text):
        if text.lower().endswith(IMAGE_EXTENSIONS):
            return SourceSpec("folder", text, text)  # a single image: a folder of one
        return SourceSpec("file", text, text)
    if text.lower().endswith(VIDEO_EXTENSIONS) or text.lower().endswith(IMAGE_EXTENSIONS):
        raise DeviceError("source {!r}: no such file; check the path".format(text))
    raise DeviceError("source {!r} is not {}".format(text, SOURCE_HELP))


# Restarting nvargus-daemon on the host makes a new /tmp/argus_socket; the one bind-mounted into a running
# container is then stale, and every reopen fails until the container is restarted as well.
CSI_RECONNECT_HINT = ("hint: if nvargus-daemon was restarted on the host (sudo systemctl restart nvargus-daemon), "
                      "restart this container too: its bind-mounted /tmp/argus_socket is stale until then")


def csi_pipeline(sensor_id, width=1280, height=720, fps=30, out_width=None, out_height=None):
    """The nvarguscamerasrc GStreamer pipeline for a Jetson CSI camera (NVIDIA's L4T Accelerated GStreamer
    guide); ``drop=true max-buffers=1`` keeps the appsink from queueing stale frames (without it, lag grows)."""
    out_width = out_width or width
    out_height = out_height or height
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM),width={},height={},format=NV12,"
            "framerate={}/1 ! nvvidconv ! video/x-raw,width={},height={},format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR ! appsink drop=true max-buffers=1".format(
                sensor_id, width, height, fps, out_width, out_height))


RTSP_CODECS = ("h264", "h265")


def gst_quote(value):
    """``value`` as a double-quoted GStreamer property (gst_parse_launch syntax): a URL with spaces, ``!`` or
    quotes stays one property instead of breaking the pipeline apart."""
    return '"{}"'.format(value.replace("\\", "\\\\").replace('"', '\\"'))


#: How long a network source may take to answer its open (seconds) and a read once it streams: a camera that
#: accepts and never answers is given up on after this, not FFmpeg's 30 s default.
NETWORK_OPEN_TIMEOUT_S = 10.0
NETWORK_READ_TIMEOUT_S = 5.0


def rtsp_pipeline(url, codec="h264", jetson=False, latency_ms=200, width=None, height=None,
                  timeout_s=NETWORK_OPEN_TIMEOUT_S):
    """RTSP through GStreamer with an explicit depayloader, parser and decoder per codec and platform.

    Not ``decodebin``: on L4T it picks the hardware decoder, whose output is ``video/x-raw(memory:NVMM)``, which
    ``videoconvert`` cannot take ("not negotiated"). On a Jetson ``nvv4l2decoder`` decodes into NVMM and
    ``nvvidconv`` copies it out as BGRx (L4T Accelerated GStreamer guide), scaled there to ``width`` x
    ``height`` when given (the VIC does it, as in the CSI pipeline; the CPU never converts full-resolution
    frames); on a desktop libav decodes (``avdec_h264``/``avdec_h265``, gst-libav). Late buffers are dropped,
    and the appsink keeps one frame. ``tcp-timeout`` bounds rtspsrc's waits for the server (microseconds).
    """
    if codec not in RTSP_CODECS:
        raise DeviceError("RTSP codec {!r} is not one of {}: give --codec {}".format(
            codec, ", ".join(RTSP_CODECS), "|".join(RTSP_CODECS)))
    number = codec[1:]  # "264" or "265"
    head = "rtspsrc location={} latency={} drop-on-latency=true tcp-timeout={} ! rtph{}depay ! h{}parse ! ".format(
        gst_quote(url), int(latency_ms), int(timeout_s * 1e6), number, number)
    if jetson:
        size = "width={},height={},".format(int(width), int(height)) if width and height else ""
        decode = "nvv4l2decoder ! nvvidconv ! video/x-raw,{}format=BGRx ! videoconvert ! ".format(size)
    else:
        decode = "avdec_h{} ! videoconvert ! ".format(number)
    return head + decode + "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1"


#: Which package holds each GStreamer element the pipelines above use (Ubuntu 18.04 / L4T R32.7 names).
GST_PACKAGES = {"videoconvert": "gstreamer1.0-plugins-base", "appsink": "gstreamer1.0-plugins-base",
                "rtspsrc": "gstreamer1.0-plugins-good", "rtph264depay": "gstreamer1.0-plugins-good",
                "rtph265depay": "gstreamer1.0-plugins-good", "h264parse": "gstreamer1.0-plugins-bad",
                "h265parse": "gstreamer1.0-plugins-bad", "avdec_h264": "gstreamer1.0-libav",
                "avdec_h265": "gstreamer1.0-libav", "nvarguscamerasrc": "nvidia-l4t-gstreamer (JetPack)",
                "nvvidconv": "nvidia-l4t-gstreamer (JetPack)", "nvv4l2decoder": "nvidia-l4t-gstreamer (JetPack)"}


def pipeline_elements(pipeline):
    """The element names of a gst-launch pipeline string, in order (caps such as ``video/x-raw,...`` left out)."""
    names = []
    for part in pipeline.split("!"):
        words = part.strip().split()
        if words and "/" not in words[0] and "=" not in words[0]:
            names.append(words[0])
    return names


def gst_element_exists(name, run=None):
    """True/False from ``gst-inspect-1.0 --exists NAME`` (exit 0: installed), None when gst-inspect-1.0 itself
    is missing or hangs (nothing known)."""
    import subprocess
    run = run or subprocess.call
    try:
        return run(["gst-inspect-1.0", "--exists", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=10) == 0
    except (OSError, subprocess.SubprocessError):
        return None


def missing_gst_elements(pipeline, exists=gst_element_exists):
    """The elements of ``pipeline`` this machine lacks, each with its package: [(name, package)]."""
    missing = []
    for name in pipeline_elements(pipeline):
        if exists(name) is False:
            missing.append((name, GST_PACKAGES.get(name, "the GStreamer plugin that provides it")))
    return missing


def missing_plugins_text(spec, missing):
    packages = sorted(set(package for _, package in missing))
    return ("{} could not be opened: GStreamer lacks {} (install {}; in the squishednets image they are part of "
            "Dockerfile.l4t)".format(spec.text, ", ".join(name for name, _ in missing), ", ".join(packages)))


def csi_sensor_name(node, sysfs="/sys/class/video4linux"):
    """The sensor's name when V4L2 node ``node`` (/dev/videoN) is a Jetson CSI camera (its sysfs name is the
    Tegra VI's "vi-output, <sensor> <i2c address>"), else None."""
    try:
        with open(os.path.join(sysfs, os.path.basename(str(node)), "name"), encoding="utf-8") as handle:
            name = handle.read().strip()
    except (IOError, OSError, ValueError):
        return None
    return name if name.startswith("vi-output") else None


def csi_index(node):
    """The sensor-id a /dev/videoN CSI node is opened with as csi://N (the same N on L4T)."""
    digits = "".join(c for c in os.path.basename(str(node)) if c.isdigit())
    return int(digits) if digits else 0


def opencv_has_gstreamer():
    import cv2
    for line in cv2.getBuildInformation().splitlines():
        if "GStreamer" in line:
            return "YES" in line
    return False


# -- sources ----------------------------------------------------------------------------------
DEFAULT_FILE_FPS = 30.0  # a file whose container names no (or an absurd) frame rate plays at this one


class FramePacer(object):
    """Hands out frames no faster than ``fps``, as a camera would: ``wait()`` sleeps until the next frame is due.

    The schedule is ``due(n+1) = max(due(n), now) + 1/fps``: a frame that comes late (slow decode, a busy
    consumer) is not followed by a burst that catches up, the next one is simply one period later.
    """

    def __init__(self, fps, clock=None, sleep=None):
        import time
        if not (fps > 0) or fps != fps:
            raise ValueError("fps must be a positive number, not {!r}".format(fps))
        self.period = 1.0 / float(fps)
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.due = None
        self.slept = 0.0  # the last wait's sleep: pacing, not capture, so the reader leaves it out of read_ms

    def wait(self):
        now = self.clock()
        self.slept = 0.0
        if self.due is not None and self.due > now:
            self.slept = self.due - now
            self.sleep(self.slept)
            now = self.due
        self.due = now + self.period


def file_fps(capture):
    """The frame rate a video file's container names (CAP_PROP_FPS), or DEFAULT_FILE_FPS when it names none."""
    import cv2
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    return float(fps) if 0.5 <= fps <= 1000.0 else DEFAULT_FILE_FPS


MAX_DAMAGED_IN_A_ROW = 250  # a video file's undecodable frames skipped in a row before it counts as ended


class CaptureSource(object):
    """Anything cv2.VideoCapture opens: cameras, CSI, V4L2 devices, RTSP streams, video files.

    ``realtime``: a video file plays at its own frame rate (a live demo, as a camera would), not as fast as it
    decodes (benchmarks); live sources are paced by their camera and ignore it.
    """

    def __init__(self, spec, loop=False, width=1280, height=720, codec="h264", realtime=False):
        self.spec = spec
        self.loop = loop
        self.codec = codec
        self.realtime = bool(realtime) and spec.kind == "file"
        self.pacer = None
        self.width = width
        self.height = height
        self.live = spec.live
        self.capture = None
        self.position = 0  # frames handed out (and damaged ones skipped) since the file's start
        self.damaged = 0
        self._frame_count = None

    def describe(self):
        return self.spec.text

    def fresh(self):
        """A new, unopened capture of the same source and settings: device.frame_reader opens it when this one's
        read has blocked past its lost limit (this one is left to the thread blocked in it)."""
        return CaptureSource(self.spec, loop=self.loop, width=self.width, height=self.height, codec=self.codec,
                             realtime=self.realtime)

    @property
    def reconnect_hint(self):
        """What the reader logs when this source is lost (None: nothing beyond the gap itself)."""
        return CSI_RECONNECT_HINT if self.spec.kind == "csi" else None

    def open(self):
        """Open (or reopen) the capture; raise DeviceError with the fix if it cannot be opened."""
        import cv2
        self.close()
        kind, target = self.spec.kind, self.spec.target
        pipeline = None  # the GStreamer pipeline, where one is used
        if kind == "csi":
            if not opencv_has_gstreamer():
                raise DeviceError("source {}: this OpenCV has no GStreamer (pip's wheels lack it); on a Jetson use "
                                  "JetPack's OpenCV (python3-opencv) or the l4t-ml container".format(self.spec.text))
            pipeline = csi_pipeline(target, self.width, self.height)
            capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        elif kind == "rtsp":
            if opencv_has_gstreamer():
                from device.machine import is_jetson
                pipeline = rtsp_pipeline(target, self.codec, jetson=is_jetson(), width=self.width, height=self.height)
                capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
            else:
                capture = ffmpeg_capture(target)
        elif kind in ("camera", "v4l2"):
            node = target if kind == "v4l2" else "/dev/video{}".format(target)
            if os.path.isdir("/dev") and not os.path.exists(node):
                raise DeviceError("{} could not be opened: {} does not exist (ls /dev/video* lists the cameras; "
                                  "in a container pass --device {})".format(self.spec.text, node, node))
            sensor = csi_sensor_name(node)
            if sensor is not None:  # V4L2 hands out a CSI sensor's raw Bayer frames, which OpenCV cannot show
                raise DeviceError("{} is the CSI camera sensor {!r}, not a USB camera: V4L2 gives its raw Bayer "
                                  "frames; open it through the ISP with --source csi://{} (nvarguscamerasrc)".format(
                                      node, sensor, csi_index(node)))
            capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
            if capture.isOpened():
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2 only: no queue of stale frames in the driver
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        else:
            capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            missing = missing_gst_elements(pipeline) if pipeline else []
            if missing:  # a missing plugin is not a loose ribbon cable or a wrong URL: say which
                raise DeviceError(missing_plugins_text(self.spec, missing))
            raise DeviceError(_open_failure(self.spec))
        self.capture = capture
        self.position, self.damaged, self._frame_count = 0, 0, None
        self.pacer = FramePacer(file_fps(capture)) if self.realtime else None

    @property
    def fps(self):
        """The pace of a realtime file (frames per second), else None (unpaced or live)."""
        return 1.0 / self.pacer.period if self.pacer is not None else None

    def read(self):
        """The next BGR frame, or None at the end of a file or when a live source fails. A video file's frame
        that does not decode (a damaged stretch) is skipped, counted in ``damaged`` and the file read on from
        the next one, up to MAX_DAMAGED_IN_A_ROW in a row; :meth:`end_note` says how the file ended."""
        if self.capture is None:
            return None
        ok, image = self.capture.read()
        if not (ok and image is not None) and self.spec.kind == "file":
            ok, image = self._read_past_damage()
        if not (ok and image is not None) and self.loop and not self.live:
            import cv2
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.position = 0
            ok, image = self.capture.read()
        if not (ok and image is not None):
            return None
        self.position += 1
        if self.pacer is not None:
            self.pacer.wait()
        return image

    def _read_past_damage(self):
        """After a failed read of a file: (ok, image) of the next frame that decodes, seeking past the ones that
        do not, while the file's index says frames are left."""
        import cv2
        total = self.frame_count
        tries = 0
        while total and self.position < total - 1 and tries < MAX_DAMAGED_IN_A_ROW:
            self.damaged += 1
            self.position += 1
            tries += 1
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, self.position)
            ok, image = self.capture.read()
            if ok and image is not None:
                return ok, image
        if total and self.position < total and tries == 0:
            self.damaged += total - self.position  # the last frames: nothing left to seek to
            self.position = total
        return False, None

    @property
    def frame_count(self):
        """A video file's frame count as its container's index says (0: unknown or live)."""
        if self._frame_count is None:
            self._frame_count = 0
            if self.capture is not None and self.spec.kind == "file":
                import cv2
                count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
                self._frame_count = int(count) if count and count > 0 else 0
        return self._frame_count

    def end_note(self):
        """How a video file ended, when it was not simply read whole: damaged frames skipped, or the read ended
        before the last frame its index names ("ended at frame 16 of 40"); None otherwise."""
        if self.spec.kind != "file":
            return None
        total, parts = self.frame_count, []
        if self.damaged:
            parts.append("{} damaged frame(s) skipped".format(self.damaged))
        if not total and self.position == 0:
            parts.append("no frame could be read (its container names no frames)")
        if total and self.position + self.damaged < total:
            parts.append("ended at frame {} of {} (the rest would not decode)".format(self.position + self.damaged, total))
        return "{}: {}".format(self.spec.text, "; ".join(parts)) if parts else None

    def close(self):
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def ffmpeg_capture(url, open_timeout_s=NETWORK_OPEN_TIMEOUT_S, read_timeout_s=NETWORK_READ_TIMEOUT_S):
    """``cv2.VideoCapture(url, CAP_FFMPEG)`` with its open and read times bounded where this OpenCV can
    (CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC, OpenCV 4.6+); older ones are bounded by the
    caller's wait (:func:`open_source`)."""
    import cv2
    opening = getattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC", None)
    reading = getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", None)
    if opening is not None and reading is not None:
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [opening, int(open_timeout_s * 1000),
                                                           reading, int(read_timeout_s * 1000)])
        except (TypeError, cv2.error):  # a build without the (url, api, params) form
            pass
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG)


def _open_failure(spec):
    if spec.kind == "camera":
        return ("camera {} could not be opened: is it plugged in (ls /dev/video*), not used by another program, "
                "and passed to the container (--device /dev/video{})?".format(spec.target, spec.target))
    if spec.kind == "v4l2":
        return ("{} could not be opened: check that it exists, that you may read it (group 'video'), and that no "
                "other program holds it".format(spec.target))
    if spec.kind == "csi":
        return ("CSI camera {} could not be opened: check the ribbon cable, that nvargus-daemon runs, and in a "
                "container -v /tmp/argus_socket:/tmp/argus_socket".format(spec.text))
    if spec.kind == "rtsp":
        return "RTSP stream {} could not be opened: check the URL, the network and the credentials".format(spec.text)
    unfinished = _unfinished_video(spec.target)
    if unfinished:
        return "video file {} could not be opened: {}".format(spec.text, unfinished)
    return ("video file {} could not be opened: OpenCV cannot decode it (try re-encoding to H.264 MP4 or MJPEG "
            "AVI)".format(spec.text))


def _unfinished_video(path):
    """Why a video file that does not open holds nothing to read, when its bytes say so: empty, or an MP4/MOV
    whose index (the ``moov`` box) was never written -- a recording stopped before it was closed. None when the
    bytes say nothing (then it is a format this OpenCV cannot decode)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(64 * 1024 * 1024)
    except (IOError, OSError) as error:
        return "it cannot be read ({})".format(getattr(error, "strerror", None) or error)
    if not data:
        return "the file is empty"
    if data[4:8] == b"ftyp" and b"moov" not in data:
        return ("it has a header but no index of its frames (no 'moov' box): a recording stopped before it was "
                "closed holds no readable frame; record it again (re-encoding cannot recover it)")
    media = data.find(b"mdat")
    if data[4:8] == b"ftyp" and (media < 4 or int(bytearray(data[media - 4:media]).hex(), 16) <= 8):
        return ("it holds a header and no frames (its media data is empty: a recording of no frames); there is "
                "nothing to classify in it")
    return None


class ImageFolderSource(object):
    """The images of a folder (sorted by name), or one image. Unreadable files are skipped and counted."""

    live = False

    def __init__(self, spec, loop=False, log=print):
        self.spec = spec
        self.loop = loop
        self.log = log
        self.paths = []
        self.position = 0
        self.skipped = 0
        self.last_path = None  # the file the last read() returned (device-serve's per-image results and outputs)

    def describe(self):
        return "{} ({} images)".format(self.spec.text, len(self.paths))

    def open(self):
        path = self.spec.target
        if os.path.isfile(path):
            self.paths = [path]
        elif not os.path.isdir(path):  # a pattern: images/*.jpg
            self.paths = sorted(p for p in glob.glob(path) if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p))
        else:
            self.paths = sorted(p for p in glob.glob(os.path.join(path, "*"))
                                if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p))
        if not self.paths:
            raise DeviceError("image folder {} holds no images ({}): add some or give another source".format(
                path, ", ".join(IMAGE_EXTENSIONS)))
        self.position = 0

    def read(self):
        """The next image, decoded by contract.images.read_image (training's own reader, so a file is used or
        skipped here exactly as host-evolve did); a skipped file is logged by name and counted in ``skipped``."""
        misses = 0
        while True:
            if self.position >= len(self.paths):
                if not self.loop or misses >= len(self.paths):
                    return None
                self.position = 0
            path = self.paths[self.position]
            self.position += 1
            image, reason = read_image(path)
            if image is not None:
                self.last_path = path
                return image
            misses += 1
            self.skipped += 1
            self.log("skipped image {}: {}".format(path, reason))

    def close(self):
        pass


class SyntheticSource(object):
    """A moving test scene made on the fly (no files, no camera): a colour gradient that drifts, a bouncing
    disc and a frame counter. Deterministic: frame i is always the same picture."""

    live = False

    def __init__(self, spec=None, width=640, height=480, frames=None):
        self.spec = spec or SourceSpec("synthetic", None, "synthetic")
        self.width = width
        self.height = height
        self.frames = frames
        self.index = 0
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self._xs = xs / width
        self._ys = ys / height

    def describe(self):
        return "synthetic {}x{}".format(self.width, self.height)

    def open(self):
        self.index = 0

    def read(self):
        import cv2
        if self.frames is not None and self.index >= self.frames:
            return None
        t = self.index / 30.0
        image = np.empty((self.height, self.width, 3), np.uint8)
        image[..., 0] = (127 + 127 * np.sin(2 * math.pi * (self._xs + 0.10 * t))).astype(np.uint8)
        image[..., 1] = (127 + 127 * np.sin(2 * math.pi * (self._ys + 0.07 * t))).astype(np.uint8)
        image[..., 2] = (127 + 127 * np.cos(2 * math.pi * (self._xs + self._ys + 0.05 * t))).astype(np.uint8)
        x = int((0.5 + 0.4 * math.sin(1.3 * t)) * self.width)
        y = int((0.5 + 0.4 * math.cos(0.9 * t)) * self.height)
        cv2.circle(image, (x, y), max(8, self.height // 8), (255, 255, 255), -1)
        cv2.putText(image, "synthetic {}".format(self.index), (10, self.height - 12), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (0, 0, 0), 2)
        self.index += 1
        return image

    def close(self):
        pass


def open_source(text, loop=False, log=print, width=1280, height=720, codec="h264", realtime=False):
    """Parse ``text`` and open the source; raise DeviceError (one line, with the fix) if it cannot be opened.
    ``realtime``: a video file plays at its own frame rate (see :class:`CaptureSource`)."""
    spec = parse_source(text)
    if spec.kind == "folder":
        source = ImageFolderSource(spec, loop=loop, log=log)
    elif spec.kind == "synthetic":
        source = SyntheticSource(spec)
    else:
        source = CaptureSource(spec, loop=loop, width=width, height=height, codec=codec, realtime=realtime)
    if spec.live:
        open_live(source, log)
    else:
        source.open()
    if spec.kind == "file":
        # A file OpenCV "opens" but cannot decode yields nothing: say so now, not after the backend is built.
        first = source.read()
        if first is None:
            count = source.frame_count
            source.close()
            unfinished = _unfinished_video(spec.target)
            if not count and not unfinished:
                raise DeviceError("video file {} holds no frame that decodes and its container names none: a "
                                  "recording stopped before its first frame, or a codec this OpenCV lacks (then "
                                  "re-encode it to H.264 MP4 or MJPEG AVI)".format(spec.text))
            raise DeviceError(_open_failure(spec))
        source.open()
    elif spec.kind == "folder":
        # A folder whose every image fails to decode would run with 0 frames and exit 0: refuse it now. The
        # probe is silent and its counts are reset, so the run skips, logs and counts each file once.
        source.log = lambda line: None
        first = source.read()
        source.log, source.skipped = log, 0
        if first is None:
            raise DeviceError("image folder {}: none of its {} image file(s) decodes (empty, truncated or not "
                              "images); give a folder with real images".format(spec.target, len(source.paths)))
        source.open()
    return source


def open_live(source, log=print, timeout_s=None):
    """Open a live source (camera, CSI, V4L2, RTSP) off the main thread (device.interruptible), so that SIGTERM,
    SIGHUP and Ctrl-C end a hung open at once; a network source is announced first and given up on after
    ``timeout_s`` (default: NETWORK_OPEN_TIMEOUT_S plus a little, after OpenCV's own limit)."""
    from device.interruptible import TimedOut, call_interruptibly
    spec = source.spec
    if timeout_s is None:
        timeout_s = NETWORK_OPEN_TIMEOUT_S + 5.0
    if spec.kind == "rtsp":
        log("source {}: connecting (giving up after {:.0f} s; Ctrl-C or SIGTERM ends the wait)".format(
            spec.text, timeout_s))
    try:
        call_interruptibly(source.open, timeout_s=timeout_s, cleanup=lambda _: source.close(),
                           name="open-" + spec.kind)
    except TimedOut:
        raise DeviceError("{} did not answer within {:.0f} s: {}".format(
            spec.text, timeout_s, _open_failure(spec).split(": ", 1)[-1]))
