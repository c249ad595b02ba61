"""Video files as the field has them (issue 31, kind 2, part): damaged frames in the middle are skipped, counted and
said, not taken for the end; a container with a header and no frames is said as such, not "re-encode it". Real
files written by OpenCV and damaged here, device-serve in a real process."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.engines.tiny_onnx import tiny_onnx


def device_serve(*args):
    done = subprocess.run([sys.executable, "-m", "device.serve", "--model", tiny_onnx(), *map(str, args), "--headless",
                           "--status-every", "0", "--warmup", "0", "--backend", "onnxruntime"],
                          capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout, done.stderr


def video(path, frames=40):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), np.uint8))
    writer.release()
    return path


def test_damaged_frames_in_the_middle_are_skipped_counted_and_said(tmp_path):
    data = bytearray(video(tmp_path / "clip.avi").read_bytes())
    chunks = [i for i in range(len(data) - 4) if data[i:i + 4] == b"00dc"]
    for k in (16, 17):  # two frames' chunk headers destroyed: the demuxer cannot read them
        data[chunks[k]:chunks[k] + 8] = b"\xff" * 8
    (tmp_path / "damaged.avi").write_bytes(bytes(data))
    code, out, err = device_serve("--source", tmp_path / "damaged.avi", "--stats-json", tmp_path / "s.json")
    assert code == 0, err
    assert "damaged.avi: " in out and "damaged frame(s) skipped" in out
    import json
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["damaged_frames"] >= 1 and stats["frames"] + stats["damaged_frames"] == 40
    assert stats["frames"] > 16  # it read on past the damage


@pytest.mark.parametrize("name, fourcc, said", [
    ("empty.avi", "MJPG", "holds no frame that decodes and its container names none"),
    ("empty.mp4", "mp4v", "holds a header and no frames"),
])
def test_a_container_with_a_header_and_no_frames_is_said_as_such(tmp_path, name, fourcc, said):
    writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    writer.release()
    if not (tmp_path / name).is_file():
        pytest.skip(f"this OpenCV writes no {name} without frames")
    code, out, err = device_serve("--source", tmp_path / name)
    assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, err
