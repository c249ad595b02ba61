"""An image whose header claims 100,000 x 100,000 pixels (a few hundred bytes on disk) among good ones: the
split is decoded with it skipped and counted, not ended by OpenCV's exception (found by trials/fuzz_cli.py)."""
import importlib
from pathlib import Path

import cv2
import numpy as np

from contract.preprocess import PreprocessSpec
from host.evolve.data import cache_split

def test_a_gigapixel_header_is_skipped_and_counted(tmp_path):
    fuzz_cli = importlib.import_module("trials.fuzz_cli")  # trials/ is a namespace package beside tests/
    good = [tmp_path / "a.png", tmp_path / "c.png"]
    for index, path in enumerate(good):
        cv2.imwrite(str(path), np.full((40, 40, 3), 60 * (index + 1), np.uint8))
    fuzz_cli.huge_png(tmp_path / "b.png")
    items = [(str(tmp_path / name), 0) for name in ("a.png", "b.png", "c.png")]
    cached = cache_split(items, PreprocessSpec.square(32), tmp_path / "cache", "train")
    assert len(cached) == 2 and [Path(path).name for path, _ in cached.skipped] == ["b.png"]
