"""Frame sources on real files: a video written by OpenCV, an image folder, the synthetic scene."""
import os
import time

import cv2
import numpy as np
import pytest

from contract.errors import DeviceError
from device.frame_reader import FrameReader
from device.sources import (CSI_RECONNECT_HINT, CaptureSource, FramePacer, SyntheticSource, csi_pipeline,
                            gst_quote, open_source, parse_source, rtsp_pipeline)


PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_video(path, frames=12, size=(64, 48), fps=20):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((size[1], size[0], 3), (i * 20) % 255, np.uint8)
        cv2.rectangle(image, (i * 3 % size[0], 5), (i * 3 % size[0] + 10, 20), (0, 0, 255), -1)
        writer.write(image)
    writer.release()
    return path


def read_all(reader, limit=1000):
    frames = []
    while len(frames) < limit:
        frame = reader.get(timeout=120)  # a bound, not a speed: a busy machine may take its time
        assert frame is not False, "the reader stalled"
        if frame is None:
            break
        frames.append(frame)
    return frames


class StepClock(object):
    """A clock that moves only when told to (``sleep`` advances it): time measured with it is exact."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_parse_source_kinds(tmp_path):
    video = write_video(tmp_path / "clip.avi")
    assert parse_source("0").kind == "camera" and parse_source("0").target == 0
    assert parse_source("csi://1").kind == "csi" and parse_source("csi://1").target == 1
    assert parse_source("/dev/video2").kind == "v4l2"
    assert parse_source("rtsp://cam.local:554/stream").kind == "rtsp"
    assert parse_source("synthetic").kind == "synthetic"
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source(str(video)).kind == "file"
    assert parse_source("rtsp://x").live and not parse_source(str(video)).live
    for bad, words in (("ftp://x/y", "unknown scheme"), ("csi://front", "csi://N"), ("nope", "is not"),
                       (str(tmp_path / "missing.mp4"), "no such file")):
        with pytest.raises(DeviceError, match=words):
            parse_source(bad)


def test_csi_pipeline_drops_stale_buffers():
    pipeline = csi_pipeline(0, 1280, 720, 30)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=0")
    assert pipeline.endswith("appsink drop=true max-buffers=1")


def test_video_file_is_read_in_lock_step_and_ends_cleanly(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12)
    reader = FrameReader(open_source(str(video))).start()
    while not reader._queue.full():  # a slow consumer (the reader is ahead, its queue full) must not lose frames
        time.sleep(0.001)
    frames = read_all(reader)
    reader.close()
    assert [f.index for f in frames] == list(range(12))
    assert reader.dropped == 0
    assert frames[0].image.shape == (48, 64, 3) and frames[0].read_ms >= 0
    assert reader.get(timeout=0.1) is None  # the end stays the end


def test_video_file_loops(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=5)
    reader = FrameReader(open_source(str(video), loop=True)).start()
    frames = read_all(reader, limit=13)
    reader.close()
    assert len(frames) == 13


def test_image_folder_skips_and_counts_unreadable_files(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / "img{}.png".format(i)), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "img1b.jpg").write_bytes(b"not a jpeg")
    logged = []
    source = open_source(str(tmp_path), log=logged.append)
    reader = FrameReader(source).start()
    frames = read_all(reader)
    reader.close()
    assert len(frames) == 3 and source.skipped == 1
    assert "img1b.jpg" in logged[0]


def test_an_image_whose_header_claims_ten_gigapixels_is_skipped_not_fatal(tmp_path):
    """Found by trials/fuzz_cli.py: OpenCV raises (not returns None) for a header over its pixel limit."""
    import importlib
    fuzz_cli = importlib.import_module("trials.fuzz_cli")  # trials/ is a namespace package beside tests/
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 90, np.uint8))
    fuzz_cli.huge_png(tmp_path / "b.png")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((20, 30, 3), 180, np.uint8))
    logged = []
    source = open_source(str(tmp_path), log=logged.append)
    reader = FrameReader(source).start()
    frames = read_all(reader)
    reader.close()
    assert len(frames) == 2 and source.skipped == 1
    assert "b.png" in logged[0]


def test_empty_folder_and_undecodable_video_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeviceError, match="holds no images"):
        open_source(str(empty))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(DeviceError, match="could not be opened"):
        open_source(str(junk))
    undecodable = tmp_path / "undecodable"
    undecodable.mkdir()
    (undecodable / "a.jpg").write_bytes(b"not a jpeg")
    (undecodable / "b.png").write_bytes(b"")
    with pytest.raises(DeviceError, match="none of its 2 image file"):  # it would run 0 frames and exit 0
        open_source(str(undecodable))


def test_unreachable_camera_is_a_clear_error():
    with pytest.raises(DeviceError, match="/dev/video87 could not be opened"):
        open_source("/dev/video87")


def test_synthetic_scene_moves_and_is_deterministic():
    one, two = SyntheticSource(width=96, height=64), SyntheticSource(width=96, height=64)
    one.open()
    two.open()
    a, b = one.read(), one.read()
    assert a.shape == (64, 96, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5  # it moves
    assert np.array_equal(two.read(), a)


def test_live_reader_keeps_only_the_newest_frame_and_counts_drops():
    source = SyntheticSource(width=64, height=48, frames=60)
    source.open()
    reader = FrameReader(source, live=True).start()
    taken = []
    while True:
        frame = reader.get(timeout=120)
        if frame is None:
            break
        taken.append(frame.index)
        # slower than the source, whatever the machine's speed: the next take waits until two newer frames were
        # read (or the source ended); they must be dropped, never queued
        while reader.read_count < frame.index + 3 and not reader._ended:
            time.sleep(0.001)
    reader.close()
    assert taken == sorted(taken) and len(taken) < 60
    assert reader.dropped + len(taken) == 60


def test_lost_live_source_is_reopened_with_back_off_and_the_gap_logged(tmp_path):
    # A real capture treated as live: at the end of the file the reader sees a lost source, reopens it
    # (the file plays again) and logs the gap.
    video = write_video(tmp_path / "clip.avi", frames=4)
    source = CaptureSource(parse_source(str(video)))
    source.open()
    source.live = True
    logged = []
    reader = FrameReader(source, log=logged.append, backoff_s=0.02).start()
    got = 0
    deadline = time.monotonic() + 120  # a bound, not a speed
    while got < 10 and time.monotonic() < deadline:
        if reader.get(timeout=1):
            got += 1
    reader.close()
    assert got == 10
    assert reader.gaps and reader.gaps[0][0] >= 0.02
    assert any("lost after 4 frames" in line for line in logged)
    assert any("is back after a gap" in line for line in logged)


@pytest.mark.parametrize("codec,depay,parse,desktop_decoder", [("h264", "rtph264depay", "h264parse", "avdec_h264"),
                                                              ("h265", "rtph265depay", "h265parse", "avdec_h265")])
def test_rtsp_pipelines_are_explicit_per_platform_and_codec(codec, depay, parse, desktop_decoder):
    url = "rtsp://cam.local:554/stream"
    jetson = rtsp_pipeline(url, codec, jetson=True, width=1280, height=720)
    assert jetson == ('rtspsrc location="rtsp://cam.local:554/stream" latency=200 drop-on-latency=true '
                      "tcp-timeout=10000000 ! {} ! {} ! nvv4l2decoder ! nvvidconv ! "
                      "video/x-raw,width=1280,height=720,format=BGRx ! videoconvert ! "  # scaled by the VIC
                      "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1".format(depay, parse))
    desktop = rtsp_pipeline(url, codec, jetson=False)
    assert desktop == ('rtspsrc location="rtsp://cam.local:554/stream" latency=200 drop-on-latency=true '
                       "tcp-timeout=10000000 ! {} ! {} ! {} ! videoconvert ! video/x-raw,format=BGR ! appsink "
                       "drop=1 max-buffers=1".format(depay, parse, desktop_decoder))
    for pipeline in (jetson, desktop):  # decodebin would pick the NVMM decoder on L4T: "not negotiated"
        assert "decodebin" not in pipeline


def test_rtsp_url_is_quoted_so_it_stays_one_property():
    url = 'rtsp://user:p"a ss!@cam/live stream\\x'
    pipeline = rtsp_pipeline(url, "h264", jetson=True)
    assert pipeline.startswith('rtspsrc location="rtsp://user:p\\"a ss!@cam/live stream\\\\x" latency=200 ')
    assert gst_quote("a b") == '"a b"'


def test_unknown_rtsp_codec_names_the_choices():
    with pytest.raises(DeviceError, match="codec 'vp9' is not one of h264, h265: give --codec h264|h265"):
        rtsp_pipeline("rtsp://x", "vp9")


def test_a_lost_csi_camera_logs_the_argus_socket_hint():
    # pip's OpenCV has no GStreamer, so every reopen of csi://0 fails here as it would with a stale socket
    source = CaptureSource(parse_source("csi://0"))
    source.live = True
    logged = []
    reader = FrameReader(source, log=logged.append, backoff_s=0.02, max_backoff_s=0.05).start()
    deadline = time.monotonic() + 120  # a bound, not a speed
    while not any("still unavailable" in line for line in logged) and time.monotonic() < deadline:
        time.sleep(0.02)
    reader.close()
    assert CSI_RECONNECT_HINT in logged
    assert "restart this container too" in CSI_RECONNECT_HINT and "/tmp/argus_socket" in CSI_RECONNECT_HINT


def read_source(source, limit=100):
    frames = []
    while len(frames) < limit:
        image = source.read()
        if image is None:
            break
        frames.append(image)
    return frames


def test_a_video_file_plays_at_its_own_frame_rate_when_realtime(tmp_path):
    """A 10 fps clip, realtime: its 8 frames are handed out one period apart, 7 periods in all (counted on an
    injected clock, so the machine's speed does not matter); unpaced, nothing waits (as a benchmark wants)."""
    video = write_video(tmp_path / "clip.avi", frames=8, size=(64, 48), fps=10)
    paced = open_source(video, realtime=True)
    assert paced.fps == pytest.approx(10.0)
    clock, slept = StepClock(), []

    def sleep(seconds):
        slept.append(seconds)
        clock.sleep(seconds)
    paced.pacer.clock, paced.pacer.sleep = clock, sleep
    assert len(read_source(paced)) == 8
    paced.close()
    assert len(slept) == 7 and sum(slept) == pytest.approx(0.7)
    unpaced = open_source(video)
    assert unpaced.fps is None and unpaced.pacer is None
    assert len(read_source(unpaced)) == 8
    unpaced.close()


def test_the_pacer_does_not_burst_after_a_late_frame():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds
    pacer = FramePacer(10.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait()           # frame 0 at t=0: no wait
    pacer.wait()           # frame 1 due at 0.1
    now[0] += 0.5          # the consumer stalls: frame 2 is late
    pacer.wait()           # late: handed out at once, no sleep
    pacer.wait()           # frame 3 one period after frame 2, not a catch-up burst
    assert slept == [0.1, 0.1]
    assert round(pacer.slept, 6) == 0.1  # what the reader leaves out of the capture time
    now[0] += 0.5
    pacer.wait()
    assert pacer.slept == 0.0
    with pytest.raises(ValueError):
        FramePacer(0)


def test_realtime_is_on_for_a_watched_demo_and_off_for_benchmarks():
    from device.serve import get_args_parser, realtime_wanted
    parse = get_args_parser().parse_args
    assert realtime_wanted(parse(["--model", "m", "--source", "v.mp4", "--http", "8080"])) is True
    assert realtime_wanted(parse(["--model", "m", "--source", "v.mp4", "--display"])) is True
    assert realtime_wanted(parse(["--model", "m", "--source", "v.mp4"])) is False
    assert realtime_wanted(parse(["--model", "m", "--source", "v.mp4", "--http", "8080", "--no-realtime"])) is False
    assert realtime_wanted(parse(["--model", "m", "--source", "v.mp4", "--realtime"])) is True


def test_live_sources_ignore_realtime():
    assert CaptureSource(parse_source("rtsp://cam/x"), realtime=True).realtime is False
    assert CaptureSource(parse_source("csi://0"), realtime=True).realtime is False


def test_a_paced_file_is_neither_counted_as_capture_time_nor_as_stalls(tmp_path):
    """The pacer's sleep and the reader share an injected clock that only the pacing moves: whatever the
    machine's speed, a frame's read_ms is its decode time alone (0 on this clock), never the 400 ms of pacing."""
    video = write_video(tmp_path / "slow.avi", frames=3, fps=20)
    source = CaptureSource(parse_source(str(video)), realtime=True)
    source.open()
    clock = StepClock()
    source.pacer = FramePacer(2.5, clock=clock, sleep=clock.sleep)  # as a 2.5 fps file is paced: 0.4 s a frame
    reader = FrameReader(source, stall_s=0.5, clock=clock).start()
    frames = read_all(reader)
    reader.close()
    assert len(frames) == 3 and reader.stall_s == 0.8 and reader.stalls == 0
    assert clock.now == pytest.approx(1000.8)  # two paced waits happened
    assert [round(frame.read_ms, 6) for frame in frames] == [0.0, 0.0, 0.0]  # without the fix: 0, 400, 400


def test_a_missing_gstreamer_element_is_named_with_its_package_not_a_ribbon_cable():
    from device.sources import csi_pipeline, missing_gst_elements, missing_plugins_text, parse_source, \
        pipeline_elements, rtsp_pipeline
    assert pipeline_elements(csi_pipeline(0)) == ["nvarguscamerasrc", "nvvidconv", "videoconvert", "appsink"]
    assert pipeline_elements(rtsp_pipeline("rtsp://cam/s"))[:3] == ["rtspsrc", "rtph264depay", "h264parse"]
    installed = {"rtspsrc", "appsink", "videoconvert"}
    missing = missing_gst_elements(rtsp_pipeline("rtsp://cam/s"), exists=lambda name: name in installed)
    assert missing == [("rtph264depay", "gstreamer1.0-plugins-good"), ("h264parse", "gstreamer1.0-plugins-bad"),
                       ("avdec_h264", "gstreamer1.0-libav")]
    text = missing_plugins_text(parse_source("rtsp://cam/s"), missing)
    assert "lacks rtph264depay, h264parse, avdec_h264" in text and "gstreamer1.0-plugins-good" in text
    assert missing_gst_elements(csi_pipeline(0), exists=lambda name: None) == []  # nothing known: no claim


def test_a_csi_sensor_given_as_a_v4l2_camera_is_named_with_the_csi_form(tmp_path):
    """On a Jetson /dev/video0 is often the CSI sensor (sysfs name "vi-output, imx219 9-0010"): V4L2 gives its
    raw Bayer frames, so it is refused with the csi:// form, not opened into garbage."""
    from device.sources import csi_index, csi_sensor_name
    (tmp_path / "video0").mkdir()
    (tmp_path / "video0" / "name").write_text("vi-output, imx219 9-0010\n")
    (tmp_path / "video1").mkdir()
    (tmp_path / "video1" / "name").write_text("HD Pro Webcam C920\n")
    assert csi_sensor_name("/dev/video0", sysfs=str(tmp_path)) == "vi-output, imx219 9-0010"
    assert csi_sensor_name("/dev/video1", sysfs=str(tmp_path)) is None
    assert csi_sensor_name("/dev/video7", sysfs=str(tmp_path)) is None
    assert csi_index("/dev/video0") == 0 and csi_index("/dev/video2") == 2
