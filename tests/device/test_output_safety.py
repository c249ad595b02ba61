"""No output lost while success is reported (issue 31, kind 2, part): labelled copies keep their input's path
below the inputs' common folder (never overwriting each other), an output that would overwrite an input is refused,
and a video the writer could not finish (a full disk, a file-size limit) is one line and exit 2. Real images, a
real ONNX model and device-serve in a real process."""
import hashlib
import os
import resource
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.engines.tiny_onnx import tiny_onnx


def device_serve(*args, limit_bytes=None):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    done = subprocess.run([sys.executable, "-m", "device.serve", "--model", tiny_onnx(), *map(str, args),
                           "--headless", "--status-every", "0", "--warmup", "0", "--backend", "onnxruntime"],
                          capture_output=True, text=True, timeout=180, preexec_fn=limit if limit_bytes else None)
    return done.returncode, done.stdout, done.stderr


def image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((40, 48, 3), value, np.uint8))


def digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def test_copies_keep_their_inputs_path_and_never_meet(tmp_path):
    for cam, shade in (("cam1", 0), ("cam2", 100)):
        for i in range(3):
            image(tmp_path / "photos" / cam / f"{i:03d}.jpg", shade + 30 * i)
    code, out, err = device_serve(f"{tmp_path}/photos/*/*.jpg", f"{tmp_path / 'out'}/")
    assert code == 0, err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == [f"{cam}/{i:03d}.jpg" for cam in ("cam1", "cam2") for i in range(3)]
    for extension, shade in ((".jpg", 200), (".tif", 50), (".webp", 120)):
        image(tmp_path / "shots" / ("a" + extension), shade)
    code, out, err = device_serve(tmp_path / "shots", f"{tmp_path / 'out2'}/")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out2")) == ["a.jpg", "a.tif.jpg", "a.webp.jpg"]


def test_an_output_that_would_overwrite_the_inputs_is_refused(tmp_path):
    for i in range(3):
        image(tmp_path / "mine" / f"{i}.jpg", 40 * i)
    before = digest(tmp_path / "mine")
    for output in (f"{tmp_path / 'mine'}/", tmp_path / "mine" / "1.jpg"):
        code, out, err = device_serve(tmp_path / "mine", output)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "would overwrite the inputs" in err and "give another" in err
    assert digest(tmp_path / "mine") == before


def test_a_video_the_disk_could_not_take_is_one_line_and_exit_2(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "frames").mkdir()
    for i in range(10):  # noise: MJPG cannot make it small, so 150 frames are megabytes
        assert cv2.imwrite(str(tmp_path / "frames" / f"{i:03d}.png"), rng.integers(0, 255, (240, 320, 3), np.uint8))
    code, out, err = device_serve(tmp_path / "frames", tmp_path / "out.avi", "--loop", "--frames", "150",
                                  limit_bytes=200 * 1024)
    assert code == 2, out + err
    assert "of the 150 frames written" in err and len(err.strip().splitlines()) == 1, err
    assert "wrote 150 annotated frame(s)" not in out
