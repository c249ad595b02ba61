"""The serve loop: capture -> preprocess -> infer -> top-k -> overlay -> output, pipelined.

Four threads run at once, joined by queues two frames deep (one would overlap; two absorb jitter):

    reader thread      (device/sources.py)   grabs frames (live: newest only; files: lock-step)
    preprocess thread                         resize + normalise frame n+1 while frame n is inferred
    inference thread = the caller's thread    backend.infer only (TensorRT runs every CUDA call on its own
                                              CUDA thread, device/backends/cuda_thread.py; nothing else
                                              here touches CUDA but a 1 s memory sample, sent there too)
    output thread                             softmax, top-k, smoothing, overlay, page/window, telemetry

One frame's path reads in order in ServeLoop's first block, a method per step as in jetson-inference's
imagenet.py: capture, preprocess, infer, top_k, overlay, publish; run() only puts those steps on the threads.

So the inference thread never waits for CPU work as long as the CPU stages are each faster than the
network: the loop runs at the bare backend's speed (device-bench), which bench/serve_loop.py checks.
Python 3.6, numpy, OpenCV; the backend is anything with ``infer(nchw float32) -> logits``.
"""
import os
import queue
import threading
import time

import numpy as np

from contract.errors import DeviceError
from device.overlay import draw_overlay

_END = object()


def softmax(logits):
    """Row-wise softmax of (N, C) logits, stable for large values."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def to_probabilities(outputs, kind="logits"):
    """Row-wise class probabilities of a classifier's (N, C) outputs, by what they hold
    (contract.model_info.OUTPUT_KINDS): logits are softmaxed, log-probabilities exponentiated, probabilities
    (a graph ending in Softmax or Sigmoid) kept as they are, clipped to [0, 1]. Never NaN: see
    :func:`finite_outputs` for outputs that are not finite."""
    return probabilities_of(outputs, kind)[0]


def probabilities_of(outputs, kind="logits"):
    """(:func:`to_probabilities` of ``outputs``, what was not finite in them or None), the outputs looked at once."""
    values, problem = finite_outputs(outputs, kind)
    if kind == "probabilities":
        return np.clip(values, 0.0, 1.0), problem
    if kind == "log_probabilities":
        return np.exp(np.minimum(values, 0.0)), problem
    return softmax(values), problem


def finite_outputs(outputs, kind="logits"):
    """(the (N, C) outputs made finite, what was not finite or None). An FP16 model's top logit overflows
    float16 (> 65504) to +inf on a bright frame, and softmax then gives inf - inf = NaN for every class
    (onnxruntime#11384): a row's +inf entries are its answer (they share probability 1), -inf and NaN entries
    are impossible classes (probability 0), a row of nothing but NaN is uniform."""
    values = np.asarray(outputs, dtype=np.float64)
    if values.ndim == 1:
        values = values.reshape(1, -1)
    finite = np.isfinite(values)
    if finite.all():
        return values, None
    problem = "{} of {} output values not finite ({})".format(
        int((~finite).sum()), values.size, ", ".join(name for name, mask in (
            ("+inf", np.isposinf(values)), ("-inf", np.isneginf(values)), ("NaN", np.isnan(values))) if mask.any()))
    fixed = values.copy()
    for row in range(fixed.shape[0]):
        line = fixed[row]
        top = np.isposinf(line)
        if top.any():  # an infinite margin: the +inf classes are the answer, shared
            share = 1.0 / top.sum()
            line[:] = ({"probabilities": 0.0, "log_probabilities": -1e300}.get(kind, -1e300))
            line[top] = {"probabilities": share, "log_probabilities": np.log(share)}.get(kind, 0.0)
        elif np.isnan(line).all():
            line[:] = {"probabilities": 1.0 / line.size, "log_probabilities": -np.log(line.size)}.get(kind, 0.0)
        else:
            low = {"probabilities": 0.0}.get(kind, -1e300)
            line[~np.isfinite(line)] = low
    return fixed, problem


def top_k(probabilities, labels, k=5):
    """[(label, probability), ...] of the ``k`` most likely classes, best first."""
    probabilities = np.asarray(probabilities).reshape(-1)
    k = min(k, probabilities.size)
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="mergesort")]  # stable in every numpy (the "stable" kind came in 1.15)
    return [(labels[i] if i < len(labels) else str(i), round(float(probabilities[i]), 6)) for i in best]


class Smoother(object):
    """Exponential moving average of the class probabilities: ``alpha`` 0 is off, 0.8 is steady."""

    def __init__(self, alpha=0.0):
        if not 0.0 <= alpha < 1.0:
            raise DeviceError("--smoothing {} must be in [0, 1): 0 is off, 0.8 steadies a flickering label".format(
                alpha))
        self.alpha = alpha
        self.state = None

    def __call__(self, probabilities):
        if self.alpha == 0.0:
            return probabilities
        if self.state is None or self.state.shape != probabilities.shape:
            self.state = probabilities.copy()
        else:
            self.state = self.alpha * self.state + (1.0 - self.alpha) * probabilities
        return self.state


def display_available():
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ServeLoop(object):
    """Runs the pipeline until the source ends, ``frames`` frames are classified, ``duration_s`` passes,
    ``stop()`` is called, or Ctrl-C. ``run()`` must be called on the thread that owns the backend (CUDA)."""

    def __init__(self, backend, spec, labels, reader, telemetry, hub=None, display=False, top=5, smoothing=0.0,
                 frames=None, duration_s=None, status_every_s=None, log=print, window_title="device-serve",
                 outputs=(), overlay_fps=True):
        self.backend = backend
        self.spec = spec
        self.gpu_preprocess = getattr(backend, "preprocess_path", "cpu") == "gpu"
        info = getattr(backend, "info", None)
        self.output_kind = getattr(info, "output_kind", "logits")
        self.labels = list(labels)
        self.reader = reader
        self.telemetry = telemetry
        self.hub = hub
        self.display = display
        self.top = top
        self.smoother = Smoother(smoothing)
        self.frames = frames
        self.duration_s = duration_s
        self.status_every_s = status_every_s
        self.log = log
        self.window_title = window_title
        self.outputs = list(outputs)  # device/outputs.py: files of annotated frames, per-image result lines
        self.overlay_fps = overlay_fps  # False for photos: a labelled photo carries its class, not a frame rate
        self.inferred = 0
        self.not_finite = 0  # frames whose output held +inf, -inf or NaN (finite_outputs)
        self.errors = []
        self._stop = threading.Event()
        self._to_infer = queue.Queue(maxsize=2)
        self._to_output = queue.Queue(maxsize=2)

    def stop(self):
        self._stop.set()

    # -- one frame's path, in order (jetson-inference's imagenet.py loop) ------------------------
    # capture -> preprocess -> infer -> top-k -> overlay -> publish. Each step is one method; run() below
    # puts them on threads (reader + preprocess thread: capture, preprocess; the caller: infer; output
    # thread: top-k, overlay, publish) so the network never waits for CPU work, but this is the order.
    def capture(self):
        """The next frame from the reader thread: a Frame, False (none yet) or None (the source ended)."""
        return self.reader.get(timeout=0.1)

    def preprocess(self, frame):
        """The network's input for ``frame`` (contract.preprocess); with GPU preprocessing the frame itself."""
        begin = time.monotonic()
        tensor = frame.image if self.gpu_preprocess else self.spec(frame.image)
        self.telemetry.stage("capture", frame.read_ms)
        if not self.gpu_preprocess:  # on the GPU path the kernel is the preprocess stage (see infer)
            self.telemetry.stage("preprocess", (time.monotonic() - begin) * 1000.0)
        return tensor

    def infer(self, tensor):
        """The logits (on the backend's CUDA thread for TensorRT; the GPU kernel preprocesses in infer_frame)."""
        begin = time.monotonic()
        logits = self.backend.infer_frame(tensor) if self.gpu_preprocess else self.backend.infer(tensor)
        elapsed = (time.monotonic() - begin) * 1000.0
        # the GPU path's upload and kernel, timed by the backend (CUDA events), are the preprocess stage: "infer"
        # (and Network FPS) stays the network alone, as jetson-inference reports it
        kernel_ms = getattr(self.backend, "last_preprocess_ms", None) if self.gpu_preprocess else None
        if kernel_ms is not None:
            kernel_ms = min(max(0.0, float(kernel_ms)), elapsed)
            self.telemetry.stage("preprocess", kernel_ms)
            elapsed -= kernel_ms
        self.telemetry.stage("infer", elapsed)
        self.inferred += 1
        return logits

    def top_k(self, logits):
        """Probabilities (softmax of logits; a foreign model's probabilities as they are), smoothing, the
        ``top`` best (label, probability)."""
        begin = time.monotonic()
        probabilities, problem = probabilities_of(np.asarray(logits).reshape(1, -1), self.output_kind)
        if problem is not None:
            self.not_finite += 1
            if self.not_finite == 1:  # said once, counted in the figures (stats: not_finite_frames)
                self.log("device-serve: warning: the model's output is not finite ({}): an FP16 overflow? Read as "
                         "its answer (+inf wins, NaN counts as impossible); counted in not_finite_frames".format(problem))
            self.telemetry.set(not_finite_frames=self.not_finite)
        probabilities = self.smoother(probabilities[0])
        best = top_k(probabilities, self.labels, self.top)
        self.telemetry.stage("postprocess", (time.monotonic() - begin) * 1000.0)
        return best

    def overlay(self, frame, best):
        """Draw the classes and both fps figures on the frame (only when someone looks at it: a window, a viewer
        of the page or /frame.jpg, an output file)."""
        begin = time.monotonic()
        if self.overlay_fps:
            draw_overlay(frame.image, best, self.telemetry.rate.recent(begin), self.telemetry.network_fps())
        else:
            draw_overlay(frame.image, best)
        self.telemetry.stage("overlay", (time.monotonic() - begin) * 1000.0)

    def publish(self, frame, best, window, annotated=False):
        """To the live page, the window and the outputs; the frame is done (end-to-end latency from capture)."""
        begin = time.monotonic()
        for output in self.outputs:
            output.write(frame, best)
        if self.hub is not None:
            self.hub.publish(frame.image, annotated)
        if window:
            import cv2
            cv2.imshow(self.window_title, frame.image)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                self.log("device-serve: window closed; finishing")
                self._stop.set()
        now = time.monotonic()
        self.telemetry.stage("output", (now - begin) * 1000.0)
        self.telemetry.frame_done((now - frame.captured) * 1000.0, best)

    # -- the inference thread (the caller's) --------------------------------------------------
    def run(self):
        """Run to the end; return the final telemetry snapshot. Raises DeviceError if a stage failed."""
        preprocess = threading.Thread(target=self._guard, args=(self._preprocess_stage,), name="preprocess",
                                      daemon=True)
        output = threading.Thread(target=self._guard, args=(self._output_stage,), name="output", daemon=True)
        self.telemetry.start()
        started = time.monotonic()
        next_cuda_sample = started
        preprocess.start()
        output.start()
        try:
            while not self._stop.is_set():
                if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                    break
                if self.frames is not None and self.inferred >= self.frames:
                    break
                try:
                    item = self._to_infer.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                frame, tensor = item
                self._put(self._to_output, (frame, self.infer(tensor)))
                if time.monotonic() >= next_cuda_sample:  # the backend says whether it has device memory to tell
                    self.telemetry.set_device_memory(self.backend.device_memory_mb())
                    next_cuda_sample = time.monotonic() + 1.0
        except KeyboardInterrupt:
            self.log("device-serve: interrupted; finishing")
        finally:
            self._end_output(output)
            preprocess.join(timeout=2.0)
        if self.errors:
            raise self.errors[0]
        return self.telemetry.snapshot()

    def _end_output(self, output):
        """Let the output stage finish the frames already inferred, then stop every stage."""
        deadline = time.monotonic() + 10.0
        while output.is_alive() and time.monotonic() < deadline:
            try:
                self._to_output.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        output.join(timeout=max(0.1, deadline - time.monotonic()))
        self._stop.set()

    def _put(self, target, item):
        """Put, waiting while the next stage is busy; give up (False) once the loop is stopping."""
        while not self._stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _guard(self, stage):
        try:
            stage()
        except DeviceError as error:
            self.errors.append(error)
        except Exception as error:  # keep the message, end the run cleanly rather than hang the pipeline
            self.errors.append(DeviceError("{} failed: {}: {}".format(stage.__name__.strip("_"),
                                                                      type(error).__name__, error)))
        finally:
            if self.errors:
                self._stop.set()

    # -- the preprocess thread ---------------------------------------------------------------
    def _preprocess_stage(self):
        while not self._stop.is_set():
            frame = self.capture()
            if frame is False:
                continue
            if frame is None:
                break
            if not self._put(self._to_infer, (frame, self.preprocess(frame))):
                return
        self._put(self._to_infer, _END)

    # -- the output thread -------------------------------------------------------------------
    def _output_stage(self):
        window = self._open_window() if self.display else False
        next_status = time.monotonic() + (self.status_every_s or 0)
        try:
            while True:
                try:
                    item = self._to_output.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if item is _END:
                    return
                frame, logits = item
                best = self.top_k(logits)
                annotated = bool(window or (self.hub is not None and self.hub.watched) or
                                 any(getattr(output, "overlay", False) for output in self.outputs))
                if annotated:
                    self.overlay(frame, best)
                self.publish(frame, best, window, annotated)
                now = time.monotonic()
                if self.status_every_s and now >= next_status:
                    self.log(status_line(self.telemetry.snapshot()))
                    next_status = now + self.status_every_s
        finally:
            if window:
                import cv2
                cv2.destroyAllWindows()

    def _open_window(self):
        if not display_available():
            self.log("device-serve: --display asked for but there is no display (DISPLAY unset); running headless")
            return False
        import cv2
        try:
            cv2.namedWindow(self.window_title, cv2.WINDOW_NORMAL)
        except cv2.error as error:  # an OpenCV built without a GUI (pip's opencv-python-headless)
            self.log("device-serve: this OpenCV cannot open a window (built without GUI support, e.g. pip's "
                     "opencv-python-headless: {}); running headless".format(type(error).__name__))
            return False
        return True


def status_line(snapshot):
    """The one-line status jetson-inference users know, with both fps figures named. Its end-to-end fps is over
    the last few seconds (the final line's is over the whole run: short runs differ, so each says which)."""
    top = snapshot.get("top") or []
    best = "{:05.2f}% {}".format(100.0 * top[0][1], top[0][0]) if top else "-"
    latency = snapshot["latency_ms"]["p50"]
    return ("device-serve: {frames} frames | {fps:.1f} FPS end-to-end (last {window:g} s) | Network {net:.1f} FPS | {best} | "
            "latency p50 {lat} ms | dropped {dropped} | RSS {rss} MB".format(
                frames=snapshot["frames"], fps=snapshot.get("fps_recent") or 0.0, net=snapshot["network_fps"],
                window=snapshot.get("fps_recent_window_s", 2.0),
                best=best, lat="-" if latency is None else "{:.2f}".format(latency), dropped=snapshot["dropped"],
                rss=snapshot["rss_mb"]))
