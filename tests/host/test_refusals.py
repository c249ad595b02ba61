"""Refusals name the cause that is there and a fix that works (issue 30, kind 2): a whole pickled model given as
weights, a data folder given to host-serve, a busy port (no token file left behind), the token's advice, a model URL
whose file name is wrong. Real files, real processes, host-serve on loopback."""
import os
import socket
import sys
import subprocess

import cv2
import numpy as np
import pytest

from tests.host.commands import flags, host_evolve, one_clear_line
from tests.host.settings import MECHANICS

SHAPES = (8, 36)


def test_a_whole_pickled_model_given_as_weights_is_named_and_torchs_advice_is_not_quoted(shapes, tmp_path):
    torch = pytest.importorskip("torch")
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet
    whole = tmp_path / "whole_model.pth"
    torch.save(SqueezeNet(Genome(num_classes=2, conv1=8, fires=((4, 8, 8),) * 8)), whole)
    for flag in ("--pretrained", "--ancestor-from"):
        result = host_evolve(*flags(**dict(MECHANICS, data=shapes, out=tmp_path / ("run" + flag))), flag, str(whole))
        last = one_clear_line(result, "holds a whole pickled object (host.evolve.model.SqueezeNet)",
                              "torch.save(model.state_dict()")
        assert "\x1b" not in result.stderr and "can still be loaded" not in last and "weights_only" not in last
        assert not (tmp_path / ("run" + flag)).exists()


def test_host_serve_on_a_data_folder_says_it_is_the_data_and_advises_what_works(tmp_path, capsys):
    from host.serve.server import main
    data = tmp_path / "photos"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        cv2.imwrite(str(data / name / "0.jpg"), np.full((8, 8, 3), 9, np.uint8))
    assert main(["--run", str(data)]) == 2
    err = capsys.readouterr().err
    assert "image-folder dataset (class folders cat/, dog/" in err
    assert f"host-evolve --data {data} --out RUN" in err and f"--out {data}" not in err
    assert main(["--run", str(tmp_path / "new")]) == 2  # nothing there yet: --out makes a run there
    assert f"host-evolve --data DIR --out {tmp_path / 'new'}" in capsys.readouterr().err
    assert sorted(os.listdir(data)) == ["cat", "dog"]  # nothing written


def test_a_busy_port_is_refused_before_a_token_file_is_made(tmp_path):
    from tests.tiny_run import make_tiny_run
    run = tmp_path / "run"
    run.mkdir()
    make_tiny_run(run)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "host.serve.server", "--run", str(run), "--bind",
                               f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot listen there" in done.stderr
    assert not (run / "host-serve.token").exists()


def test_the_made_token_is_advised_as_a_file_never_as_a_command_line_flag(tmp_path):
    from host.serve.auth import load_token
    told = []
    load_token(None, tmp_path, log=told.append)
    assert "--token-file" in told[0] and "never as --token" in told[0]


@pytest.mark.parametrize("path, advice", [
    ("/models/best/modle.onnx", "check the file name at the end of the URL"),
    ("/models/99/model.onnx", "check the generation number"),
    ("/model/0/model.onnx", "check the address"),
])
def test_a_wrong_model_url_names_the_part_that_is_wrong(tmp_path, path, advice):
    from contract.errors import DeviceError
    from device.model_source import resolve_model
    from tests.tiny_run import served_tiny_run
    with served_tiny_run(tmp_path / "run", "refusal-token-0123456789abcdef") as (server, _, _):
        with pytest.raises(DeviceError) as refused:
            resolve_model(server.url + path, cache_dir=str(tmp_path / "cache"))
    assert advice in str(refused.value) and "\n" not in str(refused.value)
