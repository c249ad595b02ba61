"""contract.images.read_image: the one reader of image files, and the same verdict on every side.

Every file here is made in the test: an EXIF-rotated TIFF, a JPEG cut half-way, an iPhone HEIC named .jpg, a
name OpenCV's imread trips on, a 1x1 PNG. Training (host/evolve/data.py), serving (device/sources.py) and INT8
calibration (calibration/dataset.py) must keep the same files and skip the same ones, for the same reason.
"""
import os

import cv2
import numpy as np
import pytest

from contract.images import read_image
from contract.preprocess import PreprocessSpec

HEIC = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 200  # the start of an iPhone photo


def make_files(folder):
    """{name: expected verdict (True = used)} of a folder of awkward files made here."""
    os.makedirs(str(folder), exist_ok=True)
    rng = np.random.RandomState(0)
    cv2.imwrite(str(folder / "plain.jpg"), (rng.rand(30, 40, 3) * 255).astype(np.uint8))
    try:  # Pillow (matplotlib's dependency) writes the EXIF orientation tag OpenCV cannot
        from PIL import Image
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 to display, as a portrait scan or phone export says
        Image.fromarray(np.full((24, 40, 3), 200, np.uint8)).save(str(folder / "portrait.tif"), exif=exif.tobytes())
    except ImportError:
        cv2.imwrite(str(folder / "portrait.tif"), np.full((24, 40, 3), 200, np.uint8))
    ok, jpg = cv2.imencode(".jpg", cv2.resize((rng.rand(16, 16, 3) * 255).astype(np.uint8), (64, 64)))
    (folder / "cut_off.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    (folder / "IMG_0001.jpg").write_bytes(HEIC)
    (folder / "empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "grey.png"), np.full((20, 20), 90, np.uint8))
    ok, png = cv2.imencode(".png", np.full((20, 22, 3), 30, np.uint8))
    (folder / "caf\u00e9 \u732b #1?.png").write_bytes(png.tobytes())
    return {"plain.jpg": True, "portrait.tif": True, "cut_off.jpg": False, "IMG_0001.jpg": False,
            "empty.png": False, "dot.png": False, "grey.png": True, "caf\u00e9 \u732b #1?.png": True}


def test_read_image_rules(tmp_path):
    expected = make_files(tmp_path)
    for name, used in expected.items():
        image, reason = read_image(str(tmp_path / name))
        assert (image is not None) == used, (name, reason)
        if used:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and reason is None
    assert "cut off" in read_image(str(tmp_path / "cut_off.jpg"))[1]
    assert "HEIC" in read_image(str(tmp_path / "IMG_0001.jpg"))[1]
    assert "empty" in read_image(str(tmp_path / "empty.png"))[1]
    assert "1x1" in read_image(str(tmp_path / "dot.png"))[1]
    assert read_image(str(tmp_path / "missing.jpg"))[1].startswith("unreadable (")


def test_host_device_and_calibration_give_the_same_verdict(tmp_path):
    from calibration.dataset import CalibrationSet
    from device.sources import open_source
    from host.evolve.data import cache_split
    folder = tmp_path / "cls"
    expected = make_files(folder)
    names = sorted(expected)
    spec = PreprocessSpec.square(16)
    host = cache_split([(str(folder / n), 0) for n in names], spec, tmp_path / "cache", "train", threads=1)
    host_used = sorted(os.path.basename(p) for p in host.paths)
    host_skipped = {os.path.basename(p): why for p, why in host.skipped}

    lines = []
    source = open_source(str(folder), log=lines.append)
    device_frames = []
    while True:
        frame = source.read()
        if frame is None:
            break
        device_frames.append(frame)
    device_skipped = {line.split(": ", 1)[0].rsplit(os.sep, 1)[1]: line.split(": ", 1)[1] for line in lines}

    calibration = CalibrationSet(str(folder), spec, batch_size=2)
    batches = list(calibration.batches())
    calibration_skipped = {os.path.basename(p): why for p, why in calibration.skipped}

    assert host_used == sorted(n for n, used in expected.items() if used)
    assert len(device_frames) == len(host_used) and source.skipped == len(host_skipped)
    assert device_skipped == host_skipped == calibration_skipped  # same files, same reasons
    assert sum(len(b) for b in batches) >= len(host_used)
    # and the same pixels: the device's network input is the cached training image, normalised
    np.testing.assert_array_equal(spec.resize_frame(device_frames[0]), host.images[0])


def test_calibration_set_without_any_usable_image_says_so(tmp_path):
    from calibration.dataset import CalibrationSet
    from contract.errors import DeviceError
    (tmp_path / "IMG_0001.jpg").write_bytes(HEIC)
    with pytest.raises(DeviceError, match="none of its 1 image file.*HEIC"):
        list(CalibrationSet(str(tmp_path), PreprocessSpec.square(16), batch_size=2).batches())
