"""The one backend interface: load a model, take a float32 NCHW batch, give back logits (N, classes)."""
import platform
import sys
import time

import numpy as np

from contract.errors import DeviceError
from contract.precisions import PRECISIONS  # noqa: F401  (re-exported for device.backends)


class Backend(object):
    """A loaded model ready to infer. Subclasses set ``name`` and implement ``_infer`` (one batch no
    larger than ``max_batch``); this class checks inputs, splits big batches, warms up and describes."""

    name = "base"

    def __init__(self, info, precision, max_batch, why=""):
        self.info = info  # contract.model_info.ModelInfo
        self.precision = precision
        #: the batch the model's input is fixed to (int), or None (dynamic): every run is then exactly that
        #: batch, smaller ones padded (see :meth:`infer`)
        self.fixed_batch = info.input_shape[0]
        self.max_batch = int(self.fixed_batch or max_batch)
        self.why = why
        self.input_name = info.input_name
        self.input_shape = tuple(info.input_shape)
        self.output_name = info.output_name

    # -- the interface ---------------------------------------------------------------------------
    def infer(self, batch):
        """float32 N x C x H x W (any N) -> float32 outputs N x classes, in batches of at most ``max_batch``.

        A model with a fixed batch B gets exactly B images a run: a shorter batch is padded with zeros (the
        padding's outputs are dropped), a longer one split. Any failure of the runtime is a DeviceError naming
        the model (:meth:`_run_error`)."""
        batch = self.check_batch(batch)
        try:
            if self.fixed_batch is not None:
                return np.concatenate([self._infer_fixed(batch[start:start + self.fixed_batch])
                                       for start in range(0, len(batch), self.fixed_batch)])
            if len(batch) <= self.max_batch:
                return self._infer(batch)
            return np.concatenate([self._infer(batch[start:start + self.max_batch])
                                   for start in range(0, len(batch), self.max_batch)])
        except DeviceError:
            raise
        except Exception as error:  # ONNX Runtime's and pycuda's own types: one line naming the model
            raise self._run_error(error, batch.shape)

    def _infer_fixed(self, batch):
        count = len(batch)
        if count < self.fixed_batch:
            padding = np.zeros((self.fixed_batch - count,) + batch.shape[1:], dtype=batch.dtype)
            batch = np.concatenate([batch, padding])
        return self._infer(batch)[:count]

    def _run_error(self, error, shape):
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        return DeviceError("{} backend failed running model {} on input {}: {}: {}".format(
            self.name, self.info.path, tuple(shape), type(error).__name__, " ".join(lines)[:300] or "no message"))

    def feeding_notes(self, batch=1):
        """What the device does to feed this model ``batch`` images a run, as lines to say at start (empty when
        nothing needs saying): padding for a fixed batch, grey frames for a 1-channel input, the output
        convention of a foreign model."""
        notes = []
        if self.fixed_batch is not None and self.fixed_batch > batch:
            notes.append("model {} has a fixed batch of {}: each run of {} image(s) is padded to {} ({}x the "
                         "work); export it with a dynamic batch for speed".format(
                             self.info.path, self.fixed_batch, batch, self.fixed_batch,
                             self.fixed_batch // max(1, batch)))
        if self.info.spec.channels == 1:
            notes.append("model {} takes 1-channel input: frames are converted to grey (OpenCV luma), "
                         "mean {} std {} ({})".format(self.info.path, self.info.spec.mean[0], self.info.spec.std[0],
                                                      "from its metadata" if self.info.spec_source == "metadata"
                                                      else "assumed: its file names none"))
        if self.info.spec_source != "metadata" or self.info.output_kind != "logits":
            notes.append("model {} output read as {} ({})".format(
                self.info.path, self.info.output_kind.replace("_", "-"), self.info.output_why))
        return notes

    def warmup(self, seconds=0.2):
        """Run zeros through the network for ``seconds`` (at least once); returns the number of runs."""
        batch = np.zeros((1,) + self.input_shape[1:], dtype=np.float32)
        runs, end = 0, time.monotonic() + float(seconds)  # monotonic: a clock stepped back (NTP) cannot stretch it
        while runs == 0 or time.monotonic() < end:
            self.infer(batch)
            runs += 1
        return runs

    def check_reference(self):
        """Run the reference inputs stored with the model's generation (contract.reference: ONNX Runtime's FP32
        outputs for a few real images) through this backend and compare; the agreement dict, or None where the
        model has no reference (a foreign model, or one fetched without its folder). Polygraphy's ``run --trt
        --onnxrt`` comparison, on the device."""
        from contract.reference import agreement, load_reference
        reference = load_reference(self.info.path, self.info.sha256)
        if reference is None:
            return None
        if tuple(reference.inputs.shape[1:]) != tuple(self.input_shape[1:]):
            raise DeviceError("reference outputs {} are for input {}, model {} takes {}; export again".format(
                reference.path, reference.inputs.shape[1:], self.info.path, self.input_shape[1:]))
        return agreement(self.infer(reference.inputs), reference, self.precision)

    def remembered_reference_check(self):
        """The agreement measured when this backend's engine was built, where it keeps one (TensorRT, beside
        the cached engine); None: check now (:meth:`check_reference`)."""
        return None

    def remember_reference_check(self, result):
        """Keep ``result`` with the engine it was measured on (TensorRT); nothing to keep elsewhere."""

    #: where frames become network input: "cpu" (contract.preprocess on the host, then :meth:`infer`) or "gpu"
    #: (the backend's own device kernel, then :meth:`infer_frame`); see TensorRTBackend.enable_gpu_preprocess
    preprocess_path = "cpu"
    #: on the "gpu" path, the milliseconds the last :meth:`infer_frame` spent uploading and preprocessing the
    #: frame on the device (the loop counts it as the preprocess stage, not as network time); None elsewhere
    last_preprocess_ms = None

    def infer_frame(self, frame_bgr):
        """Logits (1, classes) for one uint8 BGR frame, preprocessed where :attr:`preprocess_path` says."""
        return self.infer(self.info.spec(frame_bgr))

    def network_only(self, batch):
        """A no-argument callable that runs the network once on ``batch`` already placed on the device and
        waits for it: the time without host-device copies. None where there are no copies to leave out
        (a CPU provider), in which case :meth:`infer` is the network time."""
        return None

    def device_memory_mb(self):
        """(used, total) MB of the device memory this backend's context sees, or None where it has no device
        context of its own to ask (ONNX Runtime: NVML or tegrastats report the GPU instead). The serve loop
        asks once a second; TensorRT answers through pycuda on its CUDA thread."""
        return None

    def run_in_context(self, function):
        """Call ``function()`` where this backend's device work must happen (the CUDA thread for TensorRT);
        the benchmark runs its timing loops through this so that no thread hop is timed."""
        return function()

    def describe(self):
        """backend, precision, versions, device; what every measurement is recorded with."""
        return {"backend": self.name, "precision": self.precision, "why": self.why,
                "model_sha256": self.info.sha256, "input_name": self.input_name,
                "input_shape": [d if d is not None else -1 for d in self.input_shape], "max_batch": self.max_batch,
                "fixed_batch": self.fixed_batch, "output_kind": self.info.output_kind,
                "versions": {"python": platform.python_version(), "numpy": np.__version__},
                "host": {"machine": platform.machine(), "system": platform.system(), "node": platform.node(),
                         "processor": _cpu_name()}}

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- for subclasses --------------------------------------------------------------------------
    def _infer(self, batch):
        raise NotImplementedError

    def check_batch(self, batch):
        """float32, C-contiguous, shape N x C x H x W matching the model; DeviceError otherwise."""
        batch = np.asarray(batch)
        expected = self.input_shape[1:]
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected) or len(batch) == 0:
            raise DeviceError("{} backend: input of shape {} does not fit model {}'s input {} {} (N x {})".format(
                self.name, tuple(batch.shape), self.info.path, self.input_name, _shape_text(self.input_shape),
                " x ".join(str(d) for d in expected)))
        return np.ascontiguousarray(batch, dtype=np.float32)


def _shape_text(shape):
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _cpu_name():
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("model name", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except (IOError, OSError):
        pass
    return platform.processor() or sys.platform
