"""The reader thread between a frame source (device.sources) and the serve loop.

Live sources (a camera, ``csi://N``, ``/dev/videoN``, ``rtsp://``) keep only the newest frame and count the
ones the loop never took (``dropped``): a slow loop never shows old frames, lag never grows; a lost source is
reopened with back-off and the gap logged. Recorded sources (a video file, an image folder, ``synthetic``) are
read in lock-step through a short queue: nothing is dropped. Corrupt frames, failing reads and stalls are
counted, logged and survived. Python 3.6, numpy and OpenCV only.
"""
import queue
import threading
import time

import numpy as np

from contract.errors import DeviceError
from contract.images import size_problem


class Frame(object):
    """One captured frame: ``index`` (0, 1, ... as read), BGR ``image``, ``captured`` (time.monotonic()),
    ``read_ms`` (time spent in the read call: the capture stage), ``name`` (the image file it came from, for an
    image-folder source; else None)."""
    __slots__ = ("index", "image", "captured", "read_ms", "name")

    def __init__(self, index, image, captured, read_ms, name=None):
        self.index = index
        self.image = image
        self.captured = captured
        self.read_ms = read_ms
        self.name = name


_END = object()


def frame_problem(image):
    """None for a usable frame (uint8, HxW grey, HxWx3 BGR or HxWx4 BGRA, at least 2x2), else what is wrong."""
    if not isinstance(image, np.ndarray):
        return "a {}, not an image".format(type(image).__name__)
    if image.dtype != np.uint8:
        return "pixels of type {}, not uint8".format(image.dtype)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        return "shape {}, not height x width (x 1, 3 or 4)".format(tuple(image.shape))
    return size_problem(image.shape[0], image.shape[1])  # the rule image files meet too (contract.images)


def as_bgr(image):
    """A usable frame (see :func:`frame_problem`) as HxWx3 BGR: a mono camera's grey or a BGRA frame converted."""
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    import cv2
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)


class FrameReader(object):
    """Reads a source on its own thread. ``get(timeout)`` returns the next :class:`Frame`, or None at the end.

    Live sources: only the newest frame is kept; a frame replaced before the loop took it counts in
    ``dropped``. A failed read reopens the source with exponential back-off (``backoff_s`` doubling up to
    ``max_backoff_s``); each gap is logged and kept in ``gaps`` as (seconds, frames_before).
    Recorded sources: a queue of ``depth`` frames, read in lock-step; nothing is dropped.

    Faults are counted, logged and survived: a corrupt frame (not an HxWx3 uint8 image) is skipped
    (``corrupt``); a read that raises on a live source is a lost source, reopened as above (``read_errors``);
    no new frame for ``stall_s`` seconds once frames have flowed is a stall (``stalls``, ``stalled`` while it
    lasts), logged when it starts and when frames return. The loop and the page keep running through all of them.

    A live read that blocks (OpenCV's GStreamer read waits for a sample or end-of-stream: an RTSP camera gone
    without a TCP reset, a hung Argus capture) for ``lost_s`` seconds is a lost source: the blocked reader and
    its capture are left alone (``abandoned`` counts them; a capture is never released while another thread
    reads it: the abandoned thread releases its own when its read returns), and a fresh capture of the same
    source (``source.fresh()``) is opened on a new reader thread, with the back-off of any reopen. ``close()``
    likewise releases a capture only once its reader has stopped; one still blocked is left to release its own.
    """

    def __init__(self, source, log=print, depth=2, backoff_s=0.25, max_backoff_s=8.0, live=None, reconnect=None,
                 stall_s=2.0, clock=None, lost_s=10.0):
        self.source = source
        self._clock = clock or time.monotonic  # capture times, read_ms, stalls and gaps (tests inject one)
        self.log = log
        self.live = source.live if live is None else live
        self.reconnect = source.live if reconnect is None else reconnect
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.read_count = 0
        self.dropped = 0
        self.gaps = []
        self.reconnecting = False
        self.error = None
        pacer = getattr(source, "pacer", None)  # a slow realtime file is paced, not stalled: wait two periods
        self.stall_s = max(stall_s, 2.0 * pacer.period) if (pacer is not None and stall_s) else stall_s
        self.stalls = 0
        self.stalled = False
        self.lost_s = lost_s
        self.abandoned = 0  # readers left blocked in a read (with their captures) after a stall of lost_s
        self._epoch = 0  # the reader thread that may publish frames; an abandoned one has an older epoch
        self._reader_done = False  # the current reader thread has stopped (under _condition)
        self._left_to_reader = False  # close() found it blocked: it releases its capture itself
        self.corrupt = 0
        self.read_errors = 0
        self._last_frame_at = self._clock()
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=depth)
        self._newest = None
        self._ended = False
        self._condition = threading.Condition()
        self._thread = None

    def start(self):
        self._thread = self._spawn(self.source, reopen=False)
        return self

    def _spawn(self, source, reopen):
        thread = threading.Thread(target=self._run, args=(source, self._epoch, reopen), name="frame-reader",
                                  daemon=True)
        thread.start()
        return thread

    # -- consumer side
    def get(self, timeout=None):
        """The next frame; None once the source has ended (or the reader was closed). Raises the reader's
        error (a DeviceError) if reading failed for good. ``timeout`` None waits as long as it takes;
        on a timeout, returns False (no frame yet, not ended)."""
        if self.live:
            with self._condition:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._newest is None and not self._ended:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        self._watch_stall()
                        self._watch_lost()
                        return False
                    self._condition.wait(remaining if remaining is not None else 0.5)
                if self._newest is not None:
                    frame, self._newest = self._newest, None
                    return frame
                return self._finish()
        if self._ended and self._queue.empty():
            return self._finish()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            if self._ended and self._queue.empty():
                return self._finish()
            self._watch_stall()
            return False
        if item is _END:
            self._queue.put(_END)  # later calls see the end too
            return self._finish()
        return item

    def _watch_stall(self):
        """Called when no frame came in time: the first time the wait passes ``stall_s`` (once frames have
        flowed, and not while a lost source is being reopened, which logs its own gap), count and log a stall."""
        if self.stalled or self.reconnecting or self._ended or self.read_count == 0 or not self.stall_s:
            return
        waited = self._clock() - self._last_frame_at
        if waited >= self.stall_s:
            self.stalled = True
            self.stalls += 1
            self.log("source {} stalled: no frame for {:.1f} s after {} frames (stall {}); waiting for it".format(
                self.source.describe(), waited, self.read_count, self.stalls))

    def _watch_lost(self):
        """A stall that lasts ``lost_s`` on a live source that is reopened when lost: the blocked reader is
        abandoned and a fresh capture opened (class docstring). Runs on the consumer's thread."""
        if not (self.live and self.reconnect and self.lost_s and self.stalled) or self.reconnecting or self._ended:
            return
        waited = self._clock() - self._last_frame_at
        fresh = getattr(self.source, "fresh", None)
        if waited < self.lost_s or fresh is None:
            return
        with self._condition:
            self._epoch += 1  # the blocked reader may no longer publish; it releases its own capture
            self.abandoned += 1
            self.stalled = False
        self.log("source {}: no frame for {:.1f} s: treated as lost; its blocked read is left to its own thread "
                 "(which releases that capture when the read returns) and a fresh capture is opened".format(
                     self.source.describe(), waited))
        self.source = fresh()
        self._reader_done = False
        self._last_frame_at = self._clock()
        self.reconnecting = True  # until the fresh capture is open (its reopen logs the gap)
        self._thread = self._spawn(self.source, reopen=True)

    def _finish(self):
        if self.error is not None:
            raise self.error
        return None

    def close(self):
        self._stop.set()
        with self._condition:
            self._ended = True
            self._condition.notify_all()
        try:  # unblock a lock-step put
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2.0)
        with self._condition:
            if thread is None or self._reader_done:
                self.source.close()
                return
            self._left_to_reader = True  # blocked in a read: releasing the capture now would pull it from under it
        self.log("source {}: its read is still blocked; the capture is released by its reader when the read "
                 "returns".format(self.source.describe()))

    # -- reader side
    def _current(self, epoch):
        return epoch == self._epoch

    def _run(self, source, epoch, reopen):
        try:
            if reopen and not self._reconnect(source, epoch, lost=False):
                return
            while not self._stop.is_set() and self._current(epoch):
                started = self._clock()
                try:
                    image = source.read()
                except Exception as error:  # a driver or decoder failure mid-stream
                    if not self.reconnect:
                        raise
                    if not self._current(epoch):
                        break
                    self.read_errors += 1
                    self.log("source {}: reading failed ({}: {}); treating it as lost".format(
                        source.describe(), type(error).__name__, error))
                    image = None
                now = self._clock()
                if not self._current(epoch):
                    break  # abandoned while the read blocked: a fresh reader has taken over
                if image is None:
                    if self.reconnect and self._reconnect(source, epoch):
                        continue
                    break
                problem = frame_problem(image)
                if problem is not None:
                    self.corrupt += 1
                    if self.corrupt <= 3 or self.corrupt % 100 == 0:
                        self.log("source {} gave a corrupt frame ({}); skipped ({} so far)".format(
                            source.describe(), problem, self.corrupt))
                    continue
                image = as_bgr(image)
                if self.stalled:
                    self.log("source {} is back after a stall of {:.1f} s".format(
                        source.describe(), now - self._last_frame_at))
                    self.stalled = False
                self._last_frame_at = now
                pacer = getattr(source, "pacer", None)  # a realtime file's pacing sleep is not capture time
                paced = pacer.slept if pacer is not None else 0.0
                if self.live:
                    with self._condition:
                        if not self._current(epoch):
                            break
                        frame = Frame(self.read_count, image, now, (now - started - paced) * 1000.0,
                                      getattr(source, "last_path", None))
                        self.read_count += 1
                        if self._newest is not None:
                            self.dropped += 1
                        self._newest = frame
                        self._condition.notify_all()
                else:
                    frame = Frame(self.read_count, image, now, (now - started - paced) * 1000.0,
                                  getattr(source, "last_path", None))
                    self.read_count += 1
                    self._put(frame)
        except DeviceError as error:
            if self._current(epoch):
                self.error = error
        except Exception as error:  # an OpenCV failure mid-stream: surface it on the loop's thread
            if self._current(epoch):
                self.error = DeviceError("reading {} failed: {}".format(source.describe(), error))
        finally:
            if not self._current(epoch):
                source.close()  # abandoned: this thread releases its own capture, no other thread reads it
            else:
                with self._condition:
                    self._ended = True
                    self._reader_done = True
                    if self._left_to_reader:  # close() came while this read blocked: released here, after it
                        source.close()
                    self._condition.notify_all()
                self._put(_END)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _reconnect(self, source, epoch, lost=True):
        """Reopen a lost live source with back-off until it is back, the reader is stopped or this reader was
        abandoned. ``lost``: say it was lost (a fresh capture after a stall was said already)."""
        lost_at = self._clock()
        delay = self.backoff_s
        self.reconnecting = True
        if lost:
            self.log("source {} lost after {} frames; reopening (back-off from {:.2f} s)".format(
                source.describe(), self.read_count, delay))
            hint = getattr(source, "reconnect_hint", None)  # e.g. a CSI camera's stale argus socket
            if hint:
                self.log(hint)
        try:
            while not self._stop.wait(delay if lost else 0.0) and self._current(epoch):
                lost = True  # every try after the first waits
                try:
                    source.open()
                except DeviceError as error:
                    delay = min(delay * 2, self.max_backoff_s)
                    self.log("source {} still unavailable ({}); next try in {:.1f} s".format(
                        source.describe(), error, delay))
                    continue
                gap = self._clock() - lost_at
                self.gaps.append((gap, self.read_count))
                self.log("source {} is back after a gap of {:.1f} s".format(source.describe(), gap))
                return True
            return False
        finally:
            if self._current(epoch):
                self.reconnecting = False
