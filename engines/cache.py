"""The engine cache: one serialized engine per (ONNX, TensorRT, GPU, precision, batch profile), with a JSON
sidecar that proves what it is.

An engine is only valid for the exact TensorRT version and GPU that built it, and loading a wrong one
either fails inside TensorRT or, worse, crashes. So an entry is used only when its sidecar's key equals
the key asked for and the engine file has the size and sha256 the sidecar recorded; anything else (a
truncated file, an engine without a sidecar, a sidecar for another key) is rebuilt, never loaded.
Writes go to a temporary file, are fsync'ed, then renamed: the engine first, the sidecar last, so a crash
mid-write leaves at most an engine without a sidecar, which is not trusted.
"""
import hashlib
import json
import os
import tempfile
import time

from device.model_info import sha256_of_file

KEY_VERSION = 1  # bump when the meaning of a key field changes: every old entry is then rebuilt


class EngineKey(object):
    """What an engine depends on. ``fields`` is the JSON written to the sidecar and compared on lookup."""

    def __init__(self, onnx_sha256, tensorrt_version, gpu_name, compute_capability, precision, batch_profile,
                 calibration=None):
        self.fields = {
            "key_version": KEY_VERSION,
            "onnx_sha256": str(onnx_sha256),
            "tensorrt_version": str(tensorrt_version),
            "gpu_name": str(gpu_name),
            "compute_capability": str(compute_capability),
            "precision": str(precision),
            "batch_profile": [int(b) for b in batch_profile],  # min, opt, max
            "calibration": calibration,  # INT8: the calibration set's signature; None otherwise
        }

    @property
    def digest(self):
        text = json.dumps(self.fields, sort_keys=True).encode("utf-8")
        return hashlib.sha256(text).hexdigest()

    def file_stem(self):
        """``<onnx sha[:12]>-<precision>-b<min>_<opt>_<max>-<key digest[:16]>``: readable and unique."""
        return "{}-{}-b{}-{}".format(self.fields["onnx_sha256"][:12], self.fields["precision"],
                                      "_".join(str(b) for b in self.fields["batch_profile"]), self.digest[:16])


def atomic_write(path, data):
    """Write ``data`` (bytes or a buffer) to ``path`` via a temporary file in the same folder + rename."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    handle, partial = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, path)  # atomic on POSIX, replaces an old file
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class CacheEntry(object):
    """An engine file and its sidecar for one key; :meth:`check` says whether it may be loaded."""

    def __init__(self, folder, key):
        self.key = key
        self.engine_path = os.path.join(folder, key.file_stem() + ".engine")
        self.sidecar_path = os.path.join(folder, key.file_stem() + ".json")

    def check(self):
        """None when the engine may be loaded, else the reason it must be rebuilt (for the log)."""
        if not os.path.isfile(self.engine_path):
            return "no cached engine"
        if not os.path.isfile(self.sidecar_path):
            return "engine {} has no sidecar (foreign or half-written)".format(self.engine_path)
        try:
            with open(self.sidecar_path, "r") as handle:
                sidecar = json.load(handle)
        except ValueError as error:
            return "sidecar {} is not JSON ({})".format(self.sidecar_path, error)
        if not isinstance(sidecar, dict) or sidecar.get("key") != self.key.fields:
            return "sidecar {} was written for another key (ONNX, TensorRT, GPU, precision or batch " \
                   "profile differ)".format(self.sidecar_path)
        size = os.path.getsize(self.engine_path)
        if size != sidecar.get("engine_bytes"):
            return "engine {} has {} bytes, its sidecar says {} (truncated)".format(
                self.engine_path, size, sidecar.get("engine_bytes"))
        if sha256_of_file(self.engine_path) != sidecar.get("engine_sha256"):
            return "engine {} does not match the sha256 in its sidecar (corrupted)".format(self.engine_path)
        return None

    def sidecar(self):
        with open(self.sidecar_path, "r") as handle:
            return json.load(handle)

    def read(self):
        with open(self.engine_path, "rb") as handle:
            return handle.read()

    def store(self, engine_bytes, extra=None):
        """Write the engine, then its sidecar (both atomically); return the sidecar dict."""
        engine_bytes = bytes(engine_bytes)
        sidecar = {"key": self.key.fields, "engine_bytes": len(engine_bytes),
                   "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
                   "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        sidecar.update(extra or {})
        atomic_write(self.engine_path, engine_bytes)
        atomic_write(self.sidecar_path, json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8"))
        return sidecar

    def invalidate(self):
        """Remove both files (after TensorRT refused to deserialize the engine)."""
        for path in (self.sidecar_path, self.engine_path):
            if os.path.exists(path):
                os.remove(path)


