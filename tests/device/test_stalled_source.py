"""A live source whose read blocks for good (an RTSP camera gone without a TCP reset, a hung Argus capture):
the stall becomes "lost" after lost_s, the blocked reader and its capture are left alone, a fresh capture is
opened and frames flow again; no capture is ever released while a thread reads it (issue 31, kind 4)."""
import threading
import time

import numpy as np

from device.frame_reader import FrameReader


class HangingCamera(object):
    """A live capture that gives ``frames`` frames, then blocks in read() until ``release`` is set. It records
    every close() made while one of its reads was running (what must never happen)."""
    live = True

    def __init__(self, frames, registry, hang=True):
        self.frames, self.registry, self.hang = frames, registry, hang
        self.release = threading.Event()
        self.reading = 0
        self.closed_while_reading = 0
        self.closed_by = []
        self.opened = 0
        registry.append(self)

    def describe(self):
        return "rtsp://camera.test/stream"

    def fresh(self):
        return HangingCamera(10 ** 6, self.registry, hang=False)

    def open(self):
        self.opened += 1

    def read(self):
        self.reading += 1
        try:
            if self.frames <= 0:
                if self.hang:
                    self.release.wait()
                return None
            self.frames -= 1
            time.sleep(0.005)
            return np.zeros((8, 8, 3), np.uint8)
        finally:
            self.reading -= 1

    def close(self):
        if self.reading:
            self.closed_while_reading += 1
        self.closed_by.append(threading.current_thread().name)


def frames_within(reader, seconds):
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        frame = reader.get(timeout=0.05)
        if frame:
            got += 1
    return got


def test_a_read_that_blocks_is_left_alone_and_a_fresh_capture_takes_over():
    cameras, lines = [], []
    first = HangingCamera(5, cameras)
    reader = FrameReader(first, log=lines.append, stall_s=0.2, lost_s=0.6, backoff_s=0.05).start()
    try:
        assert frames_within(reader, 0.4) == 5  # then the read blocks
        assert frames_within(reader, 1.5) > 20  # a fresh capture took over after lost_s
        assert reader.abandoned == 1 and len(cameras) == 2 and cameras[1].opened == 1
        assert first.reading == 1 and first.closed_by == []  # still blocked, and nobody pulled its capture
        assert any("treated as lost" in line for line in lines), lines
        first.release.set()  # the hung read returns at last: its own thread releases that capture
        deadline = time.monotonic() + 2
        while not first.closed_by and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.closed_by == ["frame-reader"] and first.closed_while_reading == 0
    finally:
        reader.close()
    assert cameras[1].closed_while_reading == 0 and cameras[1].closed_by


def test_close_during_a_blocked_read_leaves_the_capture_to_its_reader():
    cameras, lines = [], []
    camera = HangingCamera(2, cameras)
    reader = FrameReader(camera, log=lines.append, stall_s=0.0, lost_s=0.0).start()
    frames_within(reader, 0.2)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 3.0  # close() does not wait for the read for ever
    assert camera.closed_by == [] and any("still blocked" in line for line in lines)
    camera.release.set()
    deadline = time.monotonic() + 2
    while not camera.closed_by and time.monotonic() < deadline:
        time.sleep(0.01)
    assert camera.closed_by == ["frame-reader"] and camera.closed_while_reading == 0
