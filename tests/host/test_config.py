"""Configuration: TOML under flags, unknown keys listed, bad values named."""
import pytest

from host.evolve.cli import get_args_parser, resolve_config
from host.evolve.config import KNOWN_KEYS, load_toml, resolve
from host.errors import HostError


def test_flags_win_over_the_file_and_the_file_over_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evolve.toml"
    path.write_text('[evolve]\ndata = "x"\ngenerations = 4\nenv_factor = 0.8\n')
    args = get_args_parser().parse_args(["--config", str(path), "--generations", "7"])
    config = resolve_config(args)
    assert (config.data, config.generations, config.env_factor, config.epochs) == (str(tmp_path / "x"), 7, 0.8, 4)


def test_unknown_keys_are_an_error_that_lists_the_known_ones(tmp_path):
    path = tmp_path / "evolve.toml"
    path.write_text("data = 'x'\ngenerashuns = 4\n")
    with pytest.raises(HostError) as error:
        load_toml(path)
    assert "generashuns" in str(error.value) and all(key in str(error.value) for key in KNOWN_KEYS)


@pytest.mark.parametrize("values,message", [
    ({"env_factor": 1.5}, "env_factor"), ({"generations": "many"}, "should be a int"),
    ({"budget": "watts"}, "budget"), ({"epochs": 0}, "epochs"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(HostError, match=message):
        resolve({"data": "x", **values}, {})


def test_no_data_is_refused_with_the_ways_out():
    with pytest.raises(HostError, match="--data DIR.*--demo.*--resume"):
        resolve_config(get_args_parser().parse_args([]))


def test_a_preset_named_in_the_file_expands_as_the_flag_does(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evolve.toml"
    path.write_text('[evolve]\ndata = "x"\npreset = "tiny"\nepochs = 2\n')
    config = resolve_config(get_args_parser().parse_args(["--config", str(path)]))
    assert (config.preset, config.target_mb, config.budget, config.epochs) == ("tiny", 0.49, "macs", 2)
    assert "without --pretrained trains SqueezeNet v1.1 from random weights" in caplog.text
    caplog.clear()
    resolve_config(get_args_parser().parse_args(["--config", str(path), "--pretrained", "w.pth"]))
    assert "random weights" not in caplog.text
    path.write_text('[evolve]\ndata = "x"\npreset = "huge"\n')
    with pytest.raises(HostError, match="preset = 'huge' must be one of compact, tiny"):
        resolve_config(get_args_parser().parse_args(["--config", str(path)]))
