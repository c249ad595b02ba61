"""jetson-inference's habits in device-serve: its input and output URIs (positional, as imagenet takes them),
image-folder and video outputs with the overlay drawn, one result line per image, --help with the URI forms,
examples and every default; the page and console name the generation, and /frame.jpg is the annotated frame."""
import argparse
import re
import threading
import urllib.request

import cv2
import numpy as np
import pytest

from contract.errors import DeviceError
from device.outputs import parse_output
from device.sources import parse_source
from device.uris import normalize_input
from tests.device.test_serve import RunningServe, device_serve, tiny_model  # noqa: F401  (the fixture)
from tests.device.test_sources import write_video


# -- the URIs --------------------------------------------------------------------------------------------------
def test_jetson_inference_input_uris_are_read_as_paths_and_devices(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert normalize_input("v4l2:///dev/video0") == "/dev/video0"
    assert normalize_input("file://clip.mp4") == "clip.mp4" and normalize_input("csi://0") == "csi://0"
    assert parse_source("v4l2:///dev/video1").kind == "v4l2"
    assert parse_source("file://" + str(folder)).kind == "folder"
    pattern = parse_source(str(folder / "*.jpg"))
    assert pattern.kind == "folder" and pattern.target == str(folder / "*.jpg")
    for text, words in (("display://0", "is an output: give it after the input"),
                        ("rtp://@:1234", "rtp:// input is not supported; give an rtsp://"),
                        ("v4l2://video0", "v4l2:///dev/videoN (three slashes)"),
                        (str(folder / "*.png"), "no file matches the pattern")):
        with pytest.raises(DeviceError, match=re.escape(words)):
            parse_source(text)


def test_jetson_inference_output_uris(tmp_path):
    kinds = {text: parse_output(text).kind for text in (
        "display://0", "out.mp4", "file://out.avi", "clip.mkv", "out/%i.jpg", "out/frame_%05d.png", "out/",
        str(tmp_path), "one.jpg")}
    assert kinds == {"display://0": "display", "out.mp4": "video", "file://out.avi": "video", "clip.mkv": "video",
                     "out/%i.jpg": "pattern", "out/frame_%05d.png": "pattern", "out/": "folder",
                     str(tmp_path): "folder", "one.jpg": "image"}
    assert parse_output("file://out/%i.jpg").target == "out/%i.jpg"
    for text, words in (("rtsp://@:8554/out", "use --http [HOST:]PORT"), ("webrtc://@:8554/out", "not built in"),
                        ("out/%i_%i.jpg", "one %i"), ("out/%i.mp4", "numbered images end in one of"),
                        ("out.txt", "not an output device-serve writes"), ("ftp://x/y.jpg", "unknown scheme")):
        with pytest.raises(DeviceError, match=re.escape(words)):
            parse_output(text)


# -- the outputs, end to end -------------------------------------------------------------------------------------
def flat_images(folder, colours):
    folder.mkdir()
    names = []
    for index, colour in enumerate(colours):
        name = "photo-{}.jpg".format(index)
        cv2.imwrite(str(folder / name), np.full((240, 320, 3), colour, np.uint8))
        names.append(name)
    return names


def dark_top_left(image):
    """The share of near-black pixels at the top left, where the overlay draws its black text boxes."""
    return float((image[:30, :60].max(axis=2) < 40).mean())


def overlay_drawn(image, colour):
    """The overlay's boxes at the top left of a flat image, and the rest of the image untouched."""
    rest = image[150:, 150:].astype(int)
    return dark_top_left(image) > 0.3 and np.abs(rest - np.array(colour)).max() < 12


def test_a_folder_pattern_to_a_folder_labels_each_photo_under_its_name(tiny_model, tmp_path):  # noqa: F811
    run, card = tiny_model
    colours = [(200, 60, 30), (30, 200, 60), (60, 30, 200)]
    names = flat_images(tmp_path / "photos", colours)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", str(tmp_path / "photos" / "*.jpg"),
                                  str(tmp_path / "labelled") + "/", "--warmup", "0", "--status-every", "0",
                                  "--headless")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "labelled").iterdir()) == names
    for name, colour in zip(names, colours):
        image = cv2.imread(str(tmp_path / "labelled" / name))
        assert image.shape == (240, 320, 3) and overlay_drawn(image, colour), name
        # one line per image, as imagenet prints its class: NAME: xx.xx% label
        assert re.search(r"photo-\d\.jpg: \d\d\.\d\d% (cat|dog|fox)", out)
    assert len(re.findall(r"photos/photo-\d\.jpg: ", out)) == 3
    # a labelled photo carries its class only: no fps line under it (it would say 0.0 FPS on the first photo)
    first = cv2.imread(str(tmp_path / "labelled" / names[0]))
    assert (first[30:50, :60].max(axis=2) < 40).mean() < 0.05, "an fps line was drawn under the label"
    assert "wrote 3 annotated image(s)" in out


def test_a_video_to_a_video_file_and_to_numbered_images(tiny_model, tmp_path):  # noqa: F811
    run, card = tiny_model
    clip = write_video(tmp_path / "clip.avi", frames=6, size=(160, 120))
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", "file://" + str(clip),
                                  tmp_path / "labelled.mp4", "--warmup", "0", "--status-every", "0")
    assert code == 0, err
    recorded = cv2.VideoCapture(str(tmp_path / "labelled.mp4"))
    count, first = 0, None
    while True:
        ok, image = recorded.read()
        if not ok:
            break
        first = image if first is None else first
        count += 1
    recorded.release()
    assert count == 6 and first.shape == (120, 160, 3) and dark_top_left(first) > 0.3  # the overlay's boxes
    assert "wrote 6 annotated frame(s)" in out and "(20 fps, " in out  # the clip's own rate
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", "--source", clip,
                                  str(tmp_path / "frames" / "f_%03i.jpg"), "--warmup", "0")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["f_{:03d}.jpg".format(i) for i in range(6)]


@pytest.mark.parametrize("args, words", [
    (["synthetic", "out.mp4", "--source", "synthetic"], "two inputs"),
    (["synthetic", "a.mp4", "--output", "b.mp4"], "two outputs"),
    ([], "nothing to classify: give an input (device-serve --model M INPUT [OUTPUT]"),
    (["synthetic", "rtsp://@:8554/live"], "streaming out over RTSP is not built in"),
    (["display://0"], "is an output: give it after the input"),
    (["--camera", "v4l2:///dev/video9"], "/dev/video9 does not exist"),  # a camera in V4L2's URI form, looked for
])
def test_input_and_output_mistakes_are_one_line(tiny_model, args, words):  # noqa: F811
    run, card = tiny_model
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", *args, "--frames", "1")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("device-serve: error: ") and words in err


# -- --help --------------------------------------------------------------------------------------------------------
def test_help_shows_the_uri_forms_and_examples(capsys):
    from device.serve import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for words in ("v4l2:///dev/video0", "display://0", "'out/%i.jpg'", "examples:", "[INPUT] [OUTPUT]",
                  "device-serve --model model.onnx 'photos/*.jpg' labelled/"):
        assert words in text, words


def parsers():
    from device.agent import get_args_parser as agent
    from device.bench import get_args_parser as bench
    from device.serve import get_args_parser as serve
    from host.serve.server import get_args_parser as host_serve
    return [serve(), bench(), agent(), host_serve()]


@pytest.mark.parametrize("parser", parsers(), ids=lambda parser: parser.prog)
def test_every_flag_with_a_default_shows_it_in_help(parser):
    """A flag whose default is a value (not None, False or a suppressed one) says it in --help."""
    missing = []
    for action in parser._actions:
        default = action.default
        if not action.option_strings or default in (None, False, argparse.SUPPRESS) or action.help is None:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction)):
            continue
        shown = (action.help % dict(vars(action), prog=parser.prog)) if "%(" in action.help else action.help
        if "default" not in shown or str(default if not isinstance(default, float) else "{:g}".format(default)) \
                not in shown:
            missing.append("{} (default {!r}): {}".format("/".join(action.option_strings), default, shown))
    assert not missing, "\n".join(missing)


# -- naming the model; the annotated /frame.jpg ----------------------------------------------------------------------
def test_the_page_and_console_name_the_generation_of_its_run_not_a_cache_file(tiny_model):  # noqa: F811
    from contract.model_info import ModelInfo
    from device.serve import model_title
    run, card = tiny_model
    info = ModelInfo.from_onnx(str(run / "gen-00" / "model.onnx"))
    assert model_title(info, str(run / "gen-00" / "model.onnx")) == "generation 0 of {}".format(run.name)
    assert model_title(info, "http://h:8700/models/best/model.onnx#sha256=ab") == "generation 0 from h:8700"
    assert model_title(info, "/elsewhere/model.onnx") == "generation 0 (model.onnx)"

    class Bare(object):
        generation, metadata = None, {}
    assert model_title(Bare(), "http://h:8700/models/best/model.onnx#sha256=ab") == "http://h:8700/models/best/model.onnx"
    assert model_title(Bare(), "/data/models/mine.onnx") == "mine.onnx"


def test_frame_jpg_is_the_annotated_frame_even_when_no_one_watches_the_stream(tiny_model):  # noqa: F811
    run, card = tiny_model
    serve = RunningServe("--model", run / "gen-00" / "model.onnx", "synthetic", "--http", "127.0.0.1:0",
                         "--duration", "60", "--warmup", "0", "--headless")
    try:
        line = serve.wait_for("generation 0 of {}".format(run.name))
        url = re.search(r"(http://\S+/)", serve.wait_for("live page at")).group(1)
        assert "model.onnx" not in line and card["sha256"] not in line
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "<title>squishednets: generation 0 of {} - live</title>".format(run.name) in \
                response.read().decode("utf-8")
        with urllib.request.urlopen(url + "frame.jpg", timeout=10) as response:
            image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        assert dark_top_left(image) > 0.3  # the overlay's black boxes, not the synthetic scene's colours
    finally:
        assert serve.stop() == 0


def test_the_hub_hands_frame_jpg_an_annotated_frame_only():
    from device.web import FrameHub
    hub = FrameHub()
    hub.publish(np.full((20, 20, 3), 255, np.uint8), annotated=False)
    assert hub.wait_jpeg(0, timeout=0.05, annotated=True) is None
    assert hub.wait_jpeg(0, timeout=0.05) is not None  # the stream takes any newest frame
    found = []
    waiter = threading.Thread(target=lambda: found.append(hub.wait_jpeg(0, timeout=10, annotated=True)))
    waiter.start()
    hub.publish(np.zeros((20, 20, 3), np.uint8), annotated=True)
    waiter.join()
    assert found[0] is not None and cv2.imdecode(np.frombuffer(found[0][1], np.uint8), cv2.IMREAD_COLOR).max() < 20


def test_the_stream_never_starts_with_a_raw_frame():
    """A slow source (2 fps) published a raw frame before anyone watched: the stream waits for the loop's next,
    annotated frame rather than show the raw one first."""
    import time
    from device.web import FrameHub, LiveServer
    from tests.device.test_web import mjpeg_frames
    hub = FrameHub()
    server = LiveServer("127.0.0.1", 0, lambda: {}, hub).start()
    try:
        hub.publish(np.full((40, 60, 3), 255, np.uint8), annotated=False)

        def annotate_once_watched():
            deadline = time.monotonic() + 20
            while hub.viewers == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # waits for the viewer (a condition), not for a fixed time
            hub.publish(np.zeros((40, 60, 3), np.uint8), annotated=True)
        publisher = threading.Thread(target=annotate_once_watched)
        publisher.start()
        first = mjpeg_frames(server.url + "stream.mjpg?frames=1", 1)[0]
        publisher.join()
    finally:
        server.close()
    assert first.max() < 20  # the annotated frame, not the raw white one


def test_the_status_line_and_the_final_line_say_which_window_their_fps_covers(tiny_model):  # noqa: F811
    """A short run's status fps (the last 2 s) and final fps (the whole run, start-up included) differ: each says
    which it is."""
    from device.loop import status_line
    line = status_line({"frames": 10, "fps_recent": 50.0, "fps_recent_window_s": 2.0, "network_fps": 900.0,
                        "top": [("cat", 0.9)], "latency_ms": {"p50": 1.0}, "dropped": 0, "rss_mb": 80})
    assert "50.0 FPS end-to-end (last 2 s)" in line
    run, card = tiny_model
    code, out, err = device_serve("--model", run / "gen-00" / "model.onnx", "synthetic", "--frames", "20",
                                  "--warmup", "0", "--status-every", "0")
    assert code == 0, err
    assert re.search(r"done: 20 frames, [\d.]+ FPS end-to-end \(whole run\)", out)


def test_a_looped_image_folder_prints_each_result_once_not_a_flood(tmp_path):
    """device-serve --source FOLDER --loop: one line per image on the first pass, the repeat said once."""
    import subprocess
    import sys
    import cv2
    import numpy as np
    from tests.engines.tiny_onnx import tiny_onnx
    for i in range(3):
        cv2.imwrite(str(tmp_path / "{}.jpg".format(i)), np.full((40, 40, 3), 60 * i, np.uint8))
    result = subprocess.run([sys.executable, "-m", "device.serve", "--model", tiny_onnx(), "--source", str(tmp_path),
                             "--loop", "--duration", "2", "--status-every", "0", "--backend", "onnxruntime",
                             "--warmup", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    lines = [line for line in text.splitlines() if ".jpg: " in line]
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in lines) == ["0.jpg", "1.jpg", "2.jpg"]
    assert text.count("the folder loops") == 1
    frames = int(text.split("done: ")[1].split(" frames")[0])
    assert frames > 3  # it did loop


def test_a_video_is_recorded_in_h264_where_opencv_can_and_says_which(tmp_path, monkeypatch):
    """Browsers play H.264 MP4, not mp4v: H.264 first where this OpenCV has an encoder, else mp4v and the
    ffmpeg line; either way the file is read back and the codec named. The probe itself is silent."""
    import subprocess
    import sys
    import device.outputs as outputs
    from tests.engines.tiny_onnx import tiny_onnx
    assert outputs.codec_choices(".avi") == ["MJPG"]
    monkeypatch.setattr(outputs, "_H264", ["avc1"])
    assert outputs.codec_choices(".mp4") == ["avc1", "mp4v"]
    monkeypatch.setattr(outputs, "_H264", [None])
    assert outputs.codec_choices(".mkv") == ["mp4v"]
    out = tmp_path / "out.mp4"
    result = subprocess.run([sys.executable, "-m", "device.serve", "--model", tiny_onnx(), "--source", "synthetic",
                             "--frames", "4", "--backend", "onnxruntime", "--status-every", "0", "--warmup", "0",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    assert "recording {} as ".format(out) in text and ("H.264" in text or "ffmpeg -i" in text)
    assert "h264_v4l2m2m" not in text and "cap_ffmpeg_impl" not in text  # the probe's C-level noise is kept out
    assert outputs.frames_in(str(out)) == 4
