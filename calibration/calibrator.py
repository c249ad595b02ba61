"""The entropy calibrator TensorRT asks for INT8 ranges, and its cache file.

TensorRT calls ``get_batch_size``, then ``get_batch(names)`` until it returns None, each time expecting a
list of device pointers (one per input) to a full batch; ``read_calibration_cache`` lets it skip all of that
when a cache exists, ``write_calibration_cache`` hands back the ranges to keep. :class:`CalibrationFeed` is
that logic without TensorRT (unit-tested); :func:`entropy_calibrator` wraps it in a subclass of
``trt.IInt8EntropyCalibrator2`` built at call time, since ``tensorrt`` is only imported lazily.
"""
import os

from contract.errors import DeviceError
from contract.files import atomic_write


class CalibrationFeed(object):
    """Batches from a CalibrationSet pushed to the device by ``upload(batch) -> int pointer``."""

    def __init__(self, dataset, cache_path, upload, log=None):
        self.dataset = dataset
        self.cache_path = cache_path
        self.upload = upload
        self.log = log
        self.batches_given = 0
        self._batches = None
        self.error = None  # a DeviceError met while TensorRT was asking (it cannot carry one out of its callback)

    @property
    def batch_size(self):
        return self.dataset.batch_size if self.dataset is not None else 1

    def get_batch(self, names):
        """Device pointers of the next batch, or None at the end. Never raises: TensorRT 8.2 calls this from C++,
        where a Python exception terminates the process; any error is kept in ``error`` (the builder's caller
        raises it once the build returns) and ends the calibration."""
        try:
            return self._get_batch(names)
        except Exception as error:  # noqa: BLE001 - kept and re-raised by engines/build.py after the build
            self.error = error if isinstance(error, DeviceError) else DeviceError(
                "INT8 calibration failed while reading a batch ({}: {})".format(type(error).__name__, error))
            if self.log is not None:
                self.log("calibration: {}".format(self.error))
            return None

    def _get_batch(self, names):
        if self.dataset is None:  # cache-only calibration: TensorRT should not ask, but must not crash
            return None
        if self._batches is None:
            self._batches = self.dataset.batches()
        try:
            batch = next(self._batches)
        except DeviceError as error:  # no usable image at all: end calibration; the builder's caller raises it
            self.error = error
            if self.log is not None:
                self.log("calibration: {}".format(error))
            return None
        except StopIteration:
            if self.log is not None:
                skipped = self.dataset.skipped
                self.log("calibration: {} batches of {} images ({} skipped{})".format(
                    self.batches_given, self.batch_size, len(skipped),
                    ", e.g. {}: {}".format(*skipped[0]) if skipped else ""))
            return None
        self.batches_given += 1
        return [int(self.upload(batch))] * len(names)  # one image input; TensorRT passes its name

    def read_cache(self):
        """The cache's bytes, or None (also when it cannot be read: then calibration runs, and it is said)."""
        try:
            return self._read_cache()
        except (IOError, OSError) as error:
            if self.log is not None:
                self.log("calibration: the cache {} cannot be read ({}); calibrating again".format(self.cache_path,
                                                                                                 error))
            return None

    def _read_cache(self):
        if self.cache_path and os.path.isfile(self.cache_path):
            with open(self.cache_path, "rb") as handle:
                data = handle.read()
            if data:
                if self.log is not None:
                    self.log("calibration: using the cache {}".format(self.cache_path))
                return data
        return None

    def write_cache(self, cache):
        """Keep the ranges; a cache that cannot be written is said, never raised into TensorRT (the engine
        still builds; the next build calibrates again)."""
        if self.cache_path:
            try:
                atomic_write(self.cache_path, bytes(cache))
            except (IOError, OSError) as error:
                if self.log is not None:
                    self.log("calibration: the cache {} cannot be written ({}); the next build calibrates "
                             "again".format(self.cache_path, error))


def entropy_calibrator(trt, cuda, dataset, cache_path, log=None):
    """An ``IInt8EntropyCalibrator2`` feeding ``dataset`` through one device buffer (pycuda ``cuda``).

    Must be created and used on the thread that holds the CUDA context (the builder's thread).
    """
    buffers = {}

    def upload(batch):
        if "input" not in buffers or buffers["input"][1] < batch.nbytes:
            buffers["input"] = (cuda.mem_alloc(batch.nbytes), batch.nbytes)
        cuda.memcpy_htod(buffers["input"][0], batch)
        return int(buffers["input"][0])

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 needs the base initialised explicitly
            self.feed = CalibrationFeed(dataset, cache_path, upload, log)
            self.buffers = buffers  # keep the device memory alive as long as the calibrator

        @property
        def error(self):
            return self.feed.error

        def get_batch_size(self):
            return self.feed.batch_size

        def get_batch(self, names, *unused):
            return self.feed.get_batch(names)

        def read_calibration_cache(self, *unused):
            return self.feed.read_cache()

        def write_calibration_cache(self, cache):
            self.feed.write_cache(cache)

    return EntropyCalibrator()
