"""Camera faults under the real loop with the page up (the fast form of trials/camera_faults.py): a stall, an
end of stream with refused reopens, a read that raises and corrupt frames are each counted and logged, the page
answers throughout, and frames flow again after each fault."""
import numpy as np

from trials.camera_faults import problems, run_trial
from device.frame_reader import FrameReader, as_bgr, frame_problem
from tests.engines.tiny_onnx import tiny_onnx


def test_frame_problem_names_what_is_wrong():
    assert frame_problem(np.zeros((48, 64, 3), np.uint8)) is None
    assert "not an image" in frame_problem("jpeg bytes")
    assert "float32" in frame_problem(np.zeros((48, 64, 3), np.float32))
    assert "shape (48, 64, 5)" in frame_problem(np.zeros((48, 64, 5), np.uint8))
    assert "1x1" in frame_problem(np.zeros((1, 1, 3), np.uint8))
    grey = np.full((48, 64), 77, np.uint8)  # a mono camera is not corrupt: its frames are converted
    assert frame_problem(grey) is None and as_bgr(grey).shape == (48, 64, 3) and as_bgr(grey)[0, 0, 2] == 77
    bgra = np.zeros((48, 64, 4), np.uint8)
    assert frame_problem(bgra) is None and as_bgr(bgra).shape == (48, 64, 3)


def test_stall_end_raise_and_corrupt_frames_are_survived_counted_and_logged():
    schedule = [("ok", 20), ("corrupt", 7), ("ok", 20), ("stall", 1.6), ("ok", 20), ("end", 2), ("ok", 20),
                ("raise", 1), ("ok", 20)]
    figures = run_trial(tiny_onnx(), schedule, seconds_after=1.2)
    print(figures)
    assert problems(figures) == []
    assert figures["injected"] == {"stall": 1, "corrupt": 7, "end": 1, "raise": 1, "refused_open": 2, "hang": 0}
    assert figures["counted"]["gaps"] == 2 and figures["recoveries"] == 4
    assert figures["stats_requests"] > 30 and len(figures["frames_in_1s_after_each_recovery"]) == 4


def test_a_read_that_never_returns_is_left_and_a_fresh_capture_takes_over():
    """The trial's hung read (issue 31, kind 4) under the real loop with the page up: abandoned after lost_s,
    frames again from a fresh capture, the page answering throughout, no capture released while read."""
    schedule = [("ok", 20), ("hang", 1), ("ok", 20)]
    figures = run_trial(tiny_onnx(), schedule, seconds_after=1.0, lost_s=1.5)
    assert problems(figures) == [], figures
    assert figures["counted"]["hang"] == 1 and figures["captures_released_while_read"] == 0
    assert figures["stats_answered"] == figures["stats_requests"] > 10


def test_a_recorded_source_that_raises_still_ends_the_run_with_the_error():
    class Broken(object):
        live = False

        def describe(self):
            return "broken.mp4"

        def read(self):
            raise RuntimeError("decoder crashed")

        def close(self):
            pass
    reader = FrameReader(Broken(), log=lambda m: None).start()
    try:
        reader.get(timeout=5)
        raised = None
    except Exception as error:
        raised = error
    reader.close()
    assert raised is not None and "decoder crashed" in str(raised)
