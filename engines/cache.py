"""The engine cache: one serialized engine per (ONNX, TensorRT, GPU, precision, batch profile), with a JSON
sidecar that proves what it is.

An engine is only valid for the exact TensorRT version and GPU that built it, and loading a wrong one
either fails inside TensorRT or, worse, crashes. So an entry is used only when its sidecar's key equals
the key asked for and the engine file has the size and sha256 the sidecar recorded; anything else (a
truncated file, an engine without a sidecar, a sidecar for another key) is rebuilt, never loaded.
Writes go to a temporary file, are fsync'ed, then renamed: the engine first, the sidecar last, so a crash
mid-write leaves at most an engine without a sidecar, which is not trusted.

Several processes may share a cache (two device-serve starting at boot, device-bench beside device-serve):

* reads are atomic: :meth:`CacheEntry.load` reads the sidecar once and the engine once, and checks the size
  and sha256 on the very bytes it returns, so an entry replaced or removed meanwhile gives a reason (and a
  rebuild), never a FileNotFoundError nor bytes that differ from the ones checked;
* one builder per key: a build happens under an exclusive ``fcntl`` lock on ``<stem>.lock``; a second
  process waits for it (a TensorRT build on a 4 GB TX1 leaves no memory for a second one), then finds the
  engine the first one stored and loads it.
"""
import errno
import hashlib
import json
import os
import time

try:
    import fcntl
except ImportError:  # not POSIX: one builder per cache folder is the caller's business
    fcntl = None

from contract.files import atomic_write

KEY_VERSION = 2  # bump when the meaning of a key field changes: every old entry is then rebuilt (2: the SM
                 # count and the build settings joined the key)


class EngineKey(object):
    """What an engine depends on. ``fields`` is the JSON written to the sidecar and compared on lookup."""

    def __init__(self, onnx_sha256, tensorrt_version, gpu_name, compute_capability, precision, batch_profile,
                 calibration=None, multiprocessors=0, build=None):
        """``multiprocessors``: the GPU's SM count (engines.gpu.GpuInfo); ``build``: the build settings beside
        precision and batches that change what TensorRT builds (the workspace, the tactic sources)."""
        self.fields = {
            "key_version": KEY_VERSION,
            "onnx_sha256": str(onnx_sha256),
            "tensorrt_version": str(tensorrt_version),
            "gpu_name": str(gpu_name),
            "compute_capability": str(compute_capability),
            "precision": str(precision),
            "batch_profile": [int(b) for b in batch_profile],  # min, opt, max
            "calibration": calibration,  # INT8: the calibration set's signature; None otherwise
            "multiprocessors": int(multiprocessors or 0),
            "build": build or {},
        }

    @property
    def digest(self):
        text = json.dumps(self.fields, sort_keys=True).encode("utf-8")
        return hashlib.sha256(text).hexdigest()

    def file_stem(self):
        """``<onnx sha[:12]>-<precision>-b<min>_<opt>_<max>-<key digest[:16]>``: readable and unique."""
        return "{}-{}-b{}-{}".format(self.fields["onnx_sha256"][:12], self.fields["precision"],
                                      "_".join(str(b) for b in self.fields["batch_profile"]), self.digest[:16])


class CacheEntry(object):
    """An engine file and its sidecar for one key; :meth:`check` says whether it may be loaded."""

    def __init__(self, folder, key):
        self.key = key
        self.engine_path = os.path.join(folder, key.file_stem() + ".engine")
        self.sidecar_path = os.path.join(folder, key.file_stem() + ".json")

    def load(self):
        """(engine bytes, sidecar dict, None) when the engine may be loaded, else (None, None, the reason it must
        be rebuilt). Each file is read once and the check is made on the bytes returned."""
        sidecar, reason = self._read_sidecar()
        if reason is not None:
            return None, None, reason
        engine, reason = _read_bytes(self.engine_path, "engine")
        if reason is not None:
            if "no such file" in reason:
                reason = "no cached engine (its sidecar {} is left from an older build)".format(self.sidecar_path)
            return None, None, reason
        if not isinstance(sidecar, dict) or sidecar.get("key") != self.key.fields:
            return None, None, "sidecar {} was written for another key (ONNX, TensorRT, GPU, precision or batch " \
                               "profile differ)".format(self.sidecar_path)
        if len(engine) != sidecar.get("engine_bytes"):
            return None, None, "engine {} has {} bytes, its sidecar says {} (truncated)".format(
                self.engine_path, len(engine), sidecar.get("engine_bytes"))
        if hashlib.sha256(engine).hexdigest() != sidecar.get("engine_sha256"):
            return None, None, "engine {} does not match the sha256 in its sidecar (corrupted)".format(
                self.engine_path)
        return engine, sidecar, None

    def _read_sidecar(self):
        data, reason = _read_bytes(self.sidecar_path, "sidecar")
        if reason is not None:
            if "no such file" not in reason:
                return None, reason
            if os.path.isdir(self.engine_path):
                return None, "engine path {} is a directory, not an engine (moved aside on rebuild)".format(
                    self.engine_path)
            if os.path.exists(self.engine_path):
                return None, "engine {} has no sidecar (foreign or half-written)".format(self.engine_path)
            return None, "no cached engine"
        try:
            return json.loads(data.decode("utf-8")), None
        except ValueError as error:  # UnicodeDecodeError is a ValueError too
            return None, "sidecar {} is not JSON ({})".format(self.sidecar_path, error)

    def check(self):
        """None when the engine may be loaded, else the reason it must be rebuilt (for the log)."""
        return self.load()[2]

    def sidecar(self):
        with open(self.sidecar_path, "r", encoding="utf-8") as handle:
            return json.load(handle)

    def read(self):
        with open(self.engine_path, "rb") as handle:
            return handle.read()

    def build_lock(self, log=None):
        """The exclusive lock held while this key's engine is built (``with entry.build_lock(log):``); a second
        process waits here, saying so through ``log``."""
        return _KeyLock(os.path.join(os.path.dirname(self.engine_path), self.key.file_stem() + ".lock"), log)

    def store(self, engine_bytes, extra=None):
        """Write the engine, then its sidecar (both atomically); return the sidecar dict."""
        engine_bytes = bytes(engine_bytes)
        sidecar = {"key": self.key.fields, "engine_bytes": len(engine_bytes),
                   "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
                   "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        sidecar.update(extra or {})
        for path in (self.engine_path, self.sidecar_path):
            _move_aside_if_directory(path)
        atomic_write(self.engine_path, engine_bytes)
        atomic_write(self.sidecar_path, json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8"))
        return sidecar

    def invalidate(self):
        """Remove both files (after TensorRT refused to deserialize the engine)."""
        for path in (self.sidecar_path, self.engine_path):
            if os.path.isdir(path):
                _move_aside_if_directory(path)
            elif os.path.lexists(path):
                try:
                    os.remove(path)
                except OSError as error:
                    if error.errno != errno.ENOENT:  # another process removed it first: fine
                        raise


def _read_bytes(path, what):
    """(bytes, None), or (None, reason) when ``path`` cannot be read: missing, a directory, unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), None
    except (IOError, OSError) as error:
        if error.errno == errno.ENOENT:
            return None, "{} {}: no such file".format(what, path)
        if error.errno == errno.EISDIR:
            return None, "{} path {} is a directory, not a file (moved aside on rebuild)".format(what, path)
        return None, "{} {} cannot be read ({}); it is rebuilt".format(what, path, error.strerror or error)


def _move_aside_if_directory(path):
    """A directory where a cache file belongs (made by hand, or by a bad volume mount) is renamed, not deleted:
    ``<path>.not-a-file-<time>``."""
    if os.path.isdir(path):
        os.rename(path, "{}.not-a-file-{}".format(path, time.strftime("%Y%m%dT%H%M%S")))


class _KeyLock(object):
    def __init__(self, path, log=None):
        self.path = path
        self.log = log
        self._handle = None

    def __enter__(self):
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (IOError, OSError):
                if self.log is not None:
                    self.log("engine: another process is building {}; waiting for it".format(
                        os.path.basename(self.path)[:-len(".lock")]))
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        handle, self._handle = self._handle, None
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


