"""Where device-serve's annotated frames go besides the live page: jetson-inference's output URIs.

    display://0         a window (as --display)
    out.mp4 | .avi | .mkv   a video file of the annotated frames (OpenCV's VideoWriter: mp4v in MP4/MKV, MJPG in AVI)
    out/%i.jpg          one image per frame, numbered (printf: %i, %d, %05d)
    out/                one image per frame in a folder: the input's file name for an image-folder input (so a
                        folder of photos comes back labelled under the same names), else 0.jpg, 1.jpg, ...
    out.jpg             one image, written again for each frame (the last one stays; an image input's result)

``file://`` in front of any of these is accepted. Each writer draws nothing itself: the loop overlays the
classification (device/overlay.py) on every frame when an output needs it, and hands the frame over.
For an image-folder input, :class:`ResultLog` prints one line per image (``NAME: 97.12% dog``) as
jetson-inference's imagenet does. Python 3.6, OpenCV.
"""
import os
import re

from contract.errors import DeviceError
from device.uris import STREAMING_SCHEMES, scheme_of, strip_file_scheme

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
# H.264 first where the container takes it: browsers play H.264 MP4, not MPEG-4 part 2 (mp4v). OpenCV has an
# H.264 encoder only where its FFmpeg was built with one (libx264, or openh264); pip's wheels usually lack it
H264_FOURCCS = ("avc1", "H264")
H264_CONTAINERS = (".mp4", ".m4v", ".mkv")


_H264 = []  # the probe's answer, once a process: [fourcc or None]


class _NativeStderrSilenced(object):
    """File descriptor 2 pointed at /dev/null for the block: FFmpeg's and OpenCV's C code write there directly
    (a missing H.264 encoder prints four error lines per try). Used only before the loop's threads start."""

    def __enter__(self):
        import sys
        sys.stderr.flush()
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)


def h264_fourcc():
    """The fourcc this OpenCV writes H.264 MP4 with (avc1 or H264), or None: probed once, quietly, on a
    two-frame file in a scratch folder."""
    if not _H264:
        import shutil
        import tempfile
        import cv2
        import numpy as np
        folder = tempfile.mkdtemp(prefix="squishednets-h264-")
        found = None
        try:
            with _NativeStderrSilenced():
                for code in H264_FOURCCS:
                    writer = cv2.VideoWriter(os.path.join(folder, "probe.mp4"), cv2.VideoWriter_fourcc(*code), 10.0,
                                             (32, 32))
                    ok = writer.isOpened()
                    if ok:
                        writer.write(np.zeros((32, 32, 3), np.uint8))
                    writer.release()
                    if ok:
                        found = code
                        break
        except (OSError, cv2.error):
            found = None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _H264.append(found)
    return _H264[0]


def codec_choices(extension):
    """The fourccs to try for a video file of ``extension``, best first: H.264 where the container takes it and
    this OpenCV can write it (:func:`h264_fourcc`), then the container's always-there codec."""
    extension = extension.lower()
    fallback = VIDEO_FOURCC[extension]
    h264 = h264_fourcc() if extension in H264_CONTAINERS else None
    return ([h264] if h264 else []) + [fallback]
WRITABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
OUTPUT_HELP = ("display://0, a video file (out.mp4, out.avi, out.mkv), numbered images (out/%i.jpg), a folder "
               "(out/), or one image (out.jpg); file://... too")
_PRINTF = re.compile(r"%0?\d*[id]")


class OutputSpec(object):
    """What an output URI means: ``kind`` in display, video, pattern, folder, image; ``target`` the path."""

    def __init__(self, kind, target, text):
        self.kind, self.target, self.text = kind, target, text

    def __repr__(self):
        return "OutputSpec({!r}, {!r})".format(self.kind, self.target)


def parse_output(text):
    """Map an output URI to an :class:`OutputSpec`, or DeviceError naming what is wrong and what to give.
    Nothing is created here (:func:`open_output` makes the folders)."""
    text = str(text).strip()
    if not text:
        raise DeviceError("the output is empty: give " + OUTPUT_HELP)
    scheme = scheme_of(text)
    if scheme == "display":
        return OutputSpec("display", text[len("display://"):] or "0", text)
    if scheme in STREAMING_SCHEMES or scheme == "rtsp":
        raise DeviceError("output {!r}: streaming out over {} is not built in; use --http [HOST:]PORT for the live "
                          "page (MJPEG over HTTP), or record to a file such as out.mp4".format(text, scheme.upper()))
    if scheme and scheme != "file":
        raise DeviceError("output {!r}: unknown scheme {}://; give {}".format(text, scheme, OUTPUT_HELP))
    path = strip_file_scheme(text)
    extension = os.path.splitext(path)[1].lower()
    if "%" in path:
        if len(_PRINTF.findall(path)) != 1 or "%" in _PRINTF.sub("", path):
            raise DeviceError("output {!r}: a numbered image output has one %i (or %d, %05d) and no other %, e.g. "
                              "out/%i.jpg".format(text))
        if extension not in WRITABLE_IMAGE_EXTENSIONS:
            raise DeviceError("output {!r}: numbered images end in one of {}, e.g. out/%i.jpg".format(
                text, ", ".join(WRITABLE_IMAGE_EXTENSIONS)))
        return OutputSpec("pattern", path, text)
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return OutputSpec("folder", path, text)
    if extension in VIDEO_FOURCC:
        return OutputSpec("video", path, text)
    if extension in WRITABLE_IMAGE_EXTENSIONS:
        return OutputSpec("image", path, text)
    raise DeviceError("output {!r}: not an output device-serve writes; give {}".format(text, OUTPUT_HELP))


def output_names(inputs):
    """{input path: the name of its labelled copy in a folder output}: the input's path below the inputs' common
    folder (``cam1/000.jpg`` and ``cam2/000.jpg`` stay two files), its extension kept where OpenCV writes it,
    else ``.jpg`` added (``a.gif`` -> ``a.gif.jpg``, so ``a.jpg`` and ``a.gif`` do not meet); a name met twice
    (names differing in case only, on a case-blind disk) gets ``-2``, ``-3`` ..."""
    if not inputs:
        return {}
    root = os.path.commonpath([os.path.dirname(os.path.abspath(path)) for path in inputs])
    names, used = {}, set()
    for path in inputs:
        name = os.path.relpath(os.path.abspath(path), root)
        if os.path.splitext(name)[1].lower() not in WRITABLE_IMAGE_EXTENSIONS:
            name += ".jpg"
        stem, extension = os.path.splitext(name)
        candidate, number = name, 2
        while candidate.lower() in used:
            candidate, number = "{}-{}{}".format(stem, number, extension), number + 1
        used.add(candidate.lower())
        names[path] = candidate
    return names


def refuse_overwriting_inputs(spec, inputs, names):
    """DeviceError when an output would overwrite one of the ``inputs`` (the output folder is the input folder,
    or the output image is an input): the user's photos are never replaced by their labelled copies."""
    originals = set(os.path.realpath(path) for path in inputs)
    if spec.kind == "folder":
        clash = [path for path, name in names.items()
                 if os.path.realpath(os.path.join(spec.target, name)) in originals]
    elif spec.kind == "image":
        clash = [spec.target] if os.path.realpath(spec.target) in originals else []
    else:
        clash = []
    if clash:
        raise DeviceError("output {}: the labelled images would overwrite the inputs (e.g. {}); give another "
                          "folder, e.g. {}".format(spec.text, clash[0], os.path.normpath(spec.target) + "-labelled/"))


def open_output(spec, fps=None, log=print, inputs=None):
    """A writer for ``spec`` (not display, which the loop's window is): ``write(frame, top)``, ``close()``.
    ``inputs``: an image-folder source's files, so that a folder output keeps each one's path below their
    common folder (:func:`output_names`) and nothing overwrites an input (:func:`refuse_overwriting_inputs`).
    The folder it writes into is made (as ``mkdir -p``); DeviceError when that cannot be."""
    names = output_names(inputs or [])
    if inputs:
        refuse_overwriting_inputs(spec, inputs, names)
    folder = spec.target if spec.kind == "folder" else os.path.dirname(os.path.abspath(spec.target))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DeviceError("output {}: cannot make the folder {} ({}); give a folder you may write".format(
            spec.text, folder, error.strerror or error))
    if spec.kind == "video":
        return VideoFileOutput(spec, fps or 30.0, log)
    return ImageFileOutput(spec, log, names)


def _write_image(path, image):
    """Encode by the extension and write (bytes through Python: any file name the system takes)."""
    import cv2
    ok, data = cv2.imencode(os.path.splitext(path)[1] or ".jpg", image)
    if not ok:
        raise DeviceError("output {}: OpenCV could not encode the frame".format(path))
    try:
        with open(path, "wb") as handle:
            handle.write(data.tobytes())
    except OSError as error:
        raise DeviceError("output {}: cannot write ({}); check the folder and the free space".format(
            path, error.strerror or error))


class ImageFileOutput(object):
    """Numbered images, a folder of images, or one image written again each frame (see the module's table)."""

    overlay = True

    def __init__(self, spec, log=print, names=None):
        self.spec, self.log = spec, log
        self.names = names or {}  # input path -> its copy's name in a folder output (output_names)
        self.written = 0
        self.last_path = None

    def path_for(self, frame):
        if self.spec.kind == "pattern":
            return self.spec.target % frame.index
        if self.spec.kind == "folder":
            name = getattr(frame, "name", None)
            if name in self.names:
                path = os.path.join(self.spec.target, self.names[name])
                folder = os.path.dirname(path)
                if not os.path.isdir(folder):
                    try:
                        os.makedirs(folder, exist_ok=True)
                    except OSError as error:
                        raise DeviceError("output {}: cannot make the folder {} ({})".format(
                            self.spec.text, folder, error.strerror or error))
                return path
            if name:
                stem, extension = os.path.splitext(os.path.basename(name))
                if extension.lower() not in WRITABLE_IMAGE_EXTENSIONS:
                    extension = ".jpg"
                return os.path.join(self.spec.target, stem + extension)
            return os.path.join(self.spec.target, "{}.jpg".format(frame.index))
        return self.spec.target

    def write(self, frame, top):
        self.last_path = self.path_for(frame)
        _write_image(self.last_path, frame.image)
        self.written += 1

    def close(self):
        if self.written:
            where = self.spec.target if self.spec.kind in ("image", "folder") else os.path.dirname(self.last_path) or "."
            self.log("device-serve: wrote {} annotated image(s) to {}".format(self.written, where))


class VideoFileOutput(object):
    """The annotated frames as a video file at ``fps`` (the source's own rate where it has one). Opened at the
    first frame's size; a frame of another size (a folder of mixed photos) is resized to it."""

    overlay = True

    def __init__(self, spec, fps, log=print):
        self.spec, self.fps, self.log = spec, float(fps), log
        self.codecs = codec_choices(os.path.splitext(spec.target)[1])  # probed now, before the loop's threads
        self.writer = None
        self.codec = None  # the fourcc the file is written with (H.264 where this OpenCV can)
        self.size = None
        self.written = 0

    def write(self, frame, top):
        import cv2
        image = frame.image
        if self.writer is None:
            height, width = image.shape[:2]
            self.size = (width, height)
            extension = os.path.splitext(self.spec.target)[1]
            for code in self.codecs:
                writer = cv2.VideoWriter(self.spec.target, cv2.VideoWriter_fourcc(*code), self.fps, self.size)
                if writer.isOpened():
                    self.writer, self.codec = writer, code
                    break
                writer.release()
            if self.writer is None:
                raise DeviceError("output {}: OpenCV cannot write this video (no encoder for {}); try out.avi "
                                  "(MJPG)".format(self.spec.text, extension))
            if self.codec in H264_FOURCCS:
                self.log("device-serve: recording {} as H.264 ({})".format(self.spec.target, self.codec))
            elif extension.lower() in H264_CONTAINERS:
                self.log("device-serve: recording {} as MPEG-4 part 2 (mp4v): this OpenCV has no H.264 encoder, "
                         "and browsers do not play mp4v; for a browser: ffmpeg -i {} -c:v libx264 "
                         "out-h264.mp4".format(self.spec.target, self.spec.target))
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.written += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            held = frames_in(self.spec.target)
            if held < self.written:  # OpenCV's writer says nothing when the disk fills (ENOSPC) or a limit is hit
                raise DeviceError("output {}: the video holds {} of the {} frames written{} (the disk full, or the "
                                  "file-size limit reached?); free space or give another place, then run again".format(
                                      self.spec.text, max(held, 0), self.written,
                                      ", and cannot be read back" if held < 0 else ""))
            self.log("device-serve: wrote {} annotated frame(s) to {} ({:.3g} fps, {})".format(
                self.written, self.spec.target, self.fps, self.codec))


def frames_in(path):
    """How many frames the video file at ``path`` holds, as its container's index says (-1: it cannot be opened
    or has no index, as a file cut short by a full disk)."""
    import cv2
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return -1
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(count) if count and count > 0 else -1
    finally:
        capture.release()


class ResultLog(object):
    """One line per image of an image-folder input, as jetson-inference's imagenet prints its class:
    ``NAME: 97.12% dog``. Draws nothing (``overlay`` False)."""

    overlay = False

    def __init__(self, log=print, looping=False):
        """``looping``: the folder is read again and again (--loop): each image's line is printed on its first
        pass only, and the repeat said once (a looped folder of three images printed 8,644 lines in 14 s)."""
        self.log = log
        self.looping = looping
        self._seen = set()
        self._repeat_said = False

    def write(self, frame, top):
        name = getattr(frame, "name", None) or "frame {}".format(frame.index)
        if self.looping:
            if name in self._seen:
                if not self._repeat_said:
                    self._repeat_said = True
                    self.log("device-serve: the folder loops: each image's result was printed once (its first "
                             "pass); the status line (--status-every) carries the figures from here")
                return
            self._seen.add(name)
        best = "{:05.2f}% {}".format(100.0 * top[0][1], top[0][0]) if top else "-"
        self.log("{}: {}".format(name, best))

    def close(self):
        pass
