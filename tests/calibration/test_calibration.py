"""Calibration sets from a real image folder with the model's own preprocessing, the calibrator's batch and
cache logic (with recording stand-ins for tensorrt/pycuda, which they are not), and the INT8 policy."""
import os
import types

import cv2
import numpy as np
import pytest

from calibration.calibrator import CalibrationFeed, entropy_calibrator
from calibration.dataset import CalibrationSet
from calibration.policy import int8_supported, require_int8
from contract.errors import DeviceError
from contract.model_info import ModelInfo
from engines.gpu import GpuInfo
from tests.engines.recording_tensorrt import recording_tensorrt
from tests.engines.tiny_onnx import SIZE, tiny_onnx


@pytest.fixture
def folder(tmp_path):
    rng = np.random.RandomState(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for index in range(5):
            cv2.imwrite(str(tmp_path / label / "{}.png".format(index)), (rng.rand(40, 50, 3) * 255).astype(np.uint8))
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_set_uses_the_models_preprocessing_and_fixed_batches(folder):
    dataset = CalibrationSet(str(folder), ModelInfo.from_onnx(tiny_onnx()).spec, batch_size=4)
    assert dataset.spec == ModelInfo.from_onnx(tiny_onnx()).spec and len(dataset.files) == 11
    batches = list(dataset.batches())
    assert [b.shape for b in batches] == [(4, 3, SIZE, SIZE)] * 3 and batches[0].dtype == np.float32
    first = cv2.imread(str(folder / "cat" / "0.png"))
    np.testing.assert_array_equal(batches[0][0], dataset.spec(first)[0])
    assert [(os.path.basename(p), why) for p, why in dataset.skipped] == [("broken.jpg", "not a decodable image")]


def test_signature_changes_with_the_images(folder):
    spec = ModelInfo.from_onnx(tiny_onnx()).spec
    before = CalibrationSet(str(folder), spec, 4).signature()
    assert CalibrationSet(str(folder), spec, 4, max_images=3).signature() != before
    cv2.imwrite(str(folder / "cat" / "extra.png"), np.zeros((8, 8, 3), np.uint8))
    assert CalibrationSet(str(folder), spec, 4).signature() != before


def test_bad_folders(tmp_path):
    spec = ModelInfo.from_onnx(tiny_onnx()).spec
    with pytest.raises(DeviceError, match="does not exist"):
        CalibrationSet(str(tmp_path / "missing"), spec)
    with pytest.raises(DeviceError, match="holds no images"):
        CalibrationSet(str(tmp_path), spec)


def test_feed_gives_pointers_until_done_and_keeps_the_cache(folder, tmp_path):
    dataset = CalibrationSet(str(folder), ModelInfo.from_onnx(tiny_onnx()).spec, batch_size=4)
    uploads = []
    cache = str(tmp_path / "cache" / "model.calib")
    feed = CalibrationFeed(dataset, cache, lambda batch: uploads.append(batch.shape) or 4096)
    assert feed.read_cache() is None
    assert feed.get_batch(["input_0"]) == [4096]
    while feed.get_batch(["input_0"]) is not None:
        pass
    assert uploads == [(4, 3, SIZE, SIZE)] * 3 and feed.batches_given == 3
    feed.write_cache(memoryview(b"TRT-8201-EntropyCalibration2\ninput_0: 3c010a14\n"))
    assert CalibrationFeed(None, cache, None).read_cache().startswith(b"TRT-8201")


def test_entropy_calibrator_subclasses_the_tensorrt_base(folder, tmp_path):
    trt = recording_tensorrt("8.2.1.8")
    copies = []
    recording_pycuda = types.SimpleNamespace(mem_alloc=lambda nbytes: 8192,
                                             memcpy_htod=lambda pointer, batch: copies.append((pointer, batch.shape)))
    dataset = CalibrationSet(str(folder), ModelInfo.from_onnx(tiny_onnx()).spec, batch_size=2)
    calibrator = entropy_calibrator(trt, recording_pycuda, dataset, str(tmp_path / "c.cache"))
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2)
    assert ("IInt8EntropyCalibrator2.__init__", None) in trt.calls
    assert calibrator.get_batch_size() == 2 and calibrator.get_batch(["input_0"]) == [8192]
    assert copies == [(8192, (2, 3, SIZE, SIZE))]
    assert calibrator.read_calibration_cache() is None


def test_int8_policy():
    tx1 = GpuInfo("NVIDIA Tegra X1", (5, 3))
    with pytest.raises(DeviceError, match="--precision fp16"):
        require_int8(tx1)
    assert not int8_supported((6, 2))[0] and int8_supported((6, 1))[0] and int8_supported((8, 7))[0]
    assert not int8_supported((8, 7), platform_has_fast_int8=False)[0]  # TensorRT's own answer wins
    assert "fast INT8" in require_int8(GpuInfo("Orin", (8, 7)))


def test_an_error_inside_tensorrts_callback_is_kept_not_raised_into_cpp(tmp_path):
    """TensorRT 8.2 terminates the process on a Python exception raised in get_batch: it is kept and ended."""
    from calibration.calibrator import CalibrationFeed

    class Broken(object):
        batch_size, skipped = 4, []

        def batches(self):
            raise ValueError("cv2 could not resize")
            yield  # a generator

    lines = []
    feed = CalibrationFeed(Broken(), str(tmp_path / "cache"), upload=lambda batch: 1, log=lines.append)
    assert feed.get_batch(["input_0"]) is None
    assert "ValueError: cv2 could not resize" in str(feed.error) and lines
    unwritable = CalibrationFeed(None, str(tmp_path / "missing" / "deeper" / "cache"), upload=None, log=lines.append)
    (tmp_path / "missing").write_text("a file where the folder should be")
    unwritable.write_cache(b"ranges")  # said, not raised
    assert "cannot be written" in lines[-1]
