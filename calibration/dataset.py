"""A calibration set: images from a folder, preprocessed exactly as the model was trained (the spec in its
ONNX metadata), served as fixed-size float32 NCHW batches."""
import hashlib
import os

import numpy as np

from contract.errors import DeviceError
from contract.images import IMAGE_EXTENSIONS, read_image


def image_files(folder):
    """Every image below ``folder`` (recursively), sorted, as paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, name))
    return found


class CalibrationSet(object):
    """``batch_size`` images at a time from ``folder``, at most ``max_images``, evenly spread over the sorted
    list so a class-per-folder tree contributes every class. Corrupt images are skipped and counted:
    ``skipped`` lists (path, reason)."""

    def __init__(self, folder, spec, batch_size=8, max_images=512):
        if not os.path.isdir(folder):
            raise DeviceError("calibration folder {} does not exist: give an image folder (e.g. the training "
                              "data DIR/train) for INT8 calibration".format(folder))
        files = image_files(folder)
        if not files:
            raise DeviceError("calibration folder {} holds no images ({}): INT8 needs a few hundred "
                              "representative images".format(folder, ", ".join(IMAGE_EXTENSIONS[:3])))
        if len(files) > max_images:
            step = len(files) / float(max_images)
            files = [files[int(i * step)] for i in range(max_images)]
        self.folder = folder
        self.spec = spec
        self.batch_size = int(batch_size)
        self.files = files
        self.skipped = []

    def signature(self):
        """sha256 of what makes the set: file names (relative) and sizes, the spec and the batch size."""
        digest = hashlib.sha256()
        digest.update(self.spec.to_json().encode("utf-8"))
        digest.update(str(self.batch_size).encode("ascii"))
        for path in self.files:
            digest.update(os.path.relpath(path, self.folder).encode("utf-8"))
            digest.update(str(os.path.getsize(path)).encode("ascii"))
        return digest.hexdigest()

    def _load(self, path):
        """The preprocessed image, or None (the file and the reason appended to ``skipped``): the same reader
        and rules as training and serving (contract.images.read_image)."""
        frame, reason = read_image(path)
        if frame is None:
            self.skipped.append((path, reason))
            return None
        return self.spec(frame)[0]

    def batches(self):
        """Yield float32 ``batch_size`` x 3 x H x W arrays; a short last batch is filled from its start so
        every batch has the size the calibrator announced to TensorRT."""
        pending, given = [], 0
        for path in self.files:
            image = self._load(path)
            if image is None:
                continue
            pending.append(image)
            if len(pending) == self.batch_size:
                given += 1
                yield np.ascontiguousarray(np.stack(pending))
                pending = []
        if not pending and not given:
            raise DeviceError("calibration folder {}: none of its {} image file(s) is usable (e.g. {}: {}); give "
                              "a folder of real images".format(self.folder, len(self.files), *self.skipped[0]))
        if pending:
            while len(pending) < self.batch_size:
                pending.append(pending[len(pending) % max(1, len(pending))])
            yield np.ascontiguousarray(np.stack(pending))
