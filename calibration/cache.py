"""Where an INT8 calibration cache lives, and the signature of the images it was made from.

The signature goes into the engine's cache key (engines/cache.py), so an engine calibrated on other images is
never reused; a calibration cache made from other images is dropped and made again.
"""
import json
import os

from contract.errors import DeviceError
from contract.files import atomic_write
from contract.precisions import INT8_NEEDS_CALIBRATION


def calibration_paths(cache_dir, info, trt_version):
    """(calibration cache, its sidecar) for a model under ``cache_dir``."""
    stem = "{}-trt{}".format(info.sha256[:16], trt_version)
    folder = os.path.join(cache_dir, "calibration")
    return os.path.join(folder, stem + ".cache"), os.path.join(folder, stem + ".json")


def calibration_signature(cache_dir, info, trt_version, dataset):
    """The INT8 part of the engine key: the dataset's signature; a stale calibration cache is dropped."""
    cache_path, sidecar_path = calibration_paths(cache_dir, info, trt_version)
    if dataset is None:
        if not os.path.isfile(cache_path) or not os.path.isfile(sidecar_path):
            raise DeviceError(INT8_NEEDS_CALIBRATION + " the first time; its cache {} is reused "
                              "afterwards".format(cache_path))
        with open(sidecar_path, "r", encoding="utf-8") as handle:
            return json.load(handle)["signature"]
    signature = dataset.signature()
    if os.path.isfile(sidecar_path):
        with open(sidecar_path, "r", encoding="utf-8") as handle:
            if json.load(handle).get("signature") != signature and os.path.isfile(cache_path):
                os.remove(cache_path)  # made from other images: calibrate again
    atomic_write(sidecar_path, json.dumps({"signature": signature, "folder": dataset.folder,
                                           "images": len(dataset.files)}).encode("utf-8"))
    return signature
