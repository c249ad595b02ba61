"""Non-ASCII labels under an ASCII locale (Python 3.6 in a Jetson container without LANG), emulated with
LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0: device-serve keeps running and prints the labels."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.engines.foreign_onnx import foreign_onnx

PROJECT = Path(__file__).resolve().parents[2]


def test_device_serve_prints_utf8_labels_under_an_ascii_locale(tmp_path):
    (tmp_path / "m").mkdir()
    model = foreign_onnx(tmp_path / "m" / "model.onnx", labels=["cr\u00e8me", "\u732b"])
    (tmp_path / "m" / "labels.txt").write_bytes("\ufeffcr\u00e8me\r\n\u732b\r\n".encode("utf-8"))  # Notepad's
    (tmp_path / "frames").mkdir()
    for index in range(3):
        cv2.imwrite(str(tmp_path / "frames" / "{}.png".format(index)), np.full((32, 32, 3), 90 * index, np.uint8))
    environment = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
                       PYTHONIOENCODING="", PYTHONPATH=str(PROJECT))
    environment.pop("PYTHONIOENCODING")
    done = subprocess.run([sys.executable, "-m", "device.serve", "--model", model, "--source",
                           str(tmp_path / "frames"), "--loop", "--frames", "40", "--status-every", "0.001",
                           "--headless", "--warmup", "0", "--backend", "onnxruntime"],
                          env=environment, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    out = done.stdout.decode("utf-8")  # UTF-8 bytes, not ASCII with escapes
    assert "cr\u00e8me" in out or "\u732b" in out, out[-500:]
