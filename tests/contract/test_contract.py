"""The bottom layer: addresses, token files, atomic files, image names and the report schema."""
import json
import os
import threading

import pytest

from contract.address import connect_host, parse_address
from contract.errors import ContractError, DeviceError
from contract.files import atomic_write, sha256_of_file
from contract.images import IMAGE_EXTENSIONS, is_image_name
from contract.report_schema import REPORT_KINDS, REPORT_SCHEMA, SCHEMA_VERSION
from contract.tokens import read_token_file, token_file_exposed


def test_a_bare_port_binds_to_loopback_and_bad_addresses_name_the_flag():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    assert connect_host("0.0.0.0") == "127.0.0.1" and connect_host("10.0.0.2") == "10.0.0.2"
    assert connect_host("::") == "::1"  # a wildcard bind is reached on loopback of its own family
    with pytest.raises(ContractError, match=r"IPv6 address in brackets, e.g. \[::1\]:8080"):
        parse_address("::1")  # not host ':' and port 1
    with pytest.raises(ContractError, match=r"--bind '80x' is not \[HOST:\]PORT"):
        parse_address("80x", flag="--bind")
    with pytest.raises(ContractError, match="port 1-65535"):
        parse_address("0", allow_port_zero=False)
    with pytest.raises(ContractError):
        parse_address("70000")
    assert issubclass(DeviceError, ContractError)  # device CLIs catch both the same way


def test_token_files_are_read_whole_and_empty_or_short_ones_refused(tmp_path):
    good = tmp_path / "token"
    good.write_text("s3cr3t-token-of-enough-length\nignored\n")
    os.chmod(str(good), 0o600)
    assert read_token_file(good) == "s3cr3t-token-of-enough-length"
    assert token_file_exposed(good) is None
    os.chmod(str(good), 0o644)
    assert token_file_exposed(good) == 0o644
    empty = tmp_path / "empty"
    empty.write_text("   \n")
    with pytest.raises(ContractError, match="has 0 characters"):
        read_token_file(empty)
    with pytest.raises(ContractError, match="cannot be read"):
        read_token_file(tmp_path / "missing")


def test_atomic_write_leaves_old_or_new_never_a_part(tmp_path):
    target = tmp_path / "sub" / "file.json"
    atomic_write(target, "old")
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(200):
        atomic_write(target, "x" * 5000)
        atomic_write(target, b"old")
    stop.set()
    thread.join()
    assert seen <= {"old", "x" * 5000}
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".partial")]
    import hashlib
    assert sha256_of_file(target) == hashlib.sha256(b"old").hexdigest()


def test_one_list_of_image_extensions_including_what_the_device_classifies():
    for name in ("a.JPG", "b.tif", "c.ppm", "d.webp"):
        assert is_image_name(name)
    assert not is_image_name("notes.txt") and ".tiff" in IMAGE_EXTENSIONS


def test_the_report_schema_is_plain_json_and_lists_what_it_requires():
    text = json.dumps(REPORT_SCHEMA)  # no Python objects: a validator on either side can read it
    schema = json.loads(text)
    assert set(schema["required"]) <= set(schema["properties"])
    assert schema["properties"]["kind"]["enum"] == list(REPORT_KINDS)
    assert schema["properties"]["schema"]["const"] == SCHEMA_VERSION
    assert set(schema["properties"]["stats"]["required"]) == {"frames", "fps"}


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask_as_any_build_output_does(tmp_path, umask, expected):
    """mkstemp makes 0600 files: a second user, nginx or a container's non-root user could not read model.onnx."""
    import stat
    from contract.files import current_umask
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write(tmp_path / "model.onnx", b"onnx")
        atomic_write(tmp_path / "private", b"x", mode=0o600)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(str(tmp_path / "model.onnx")).st_mode) == expected
    assert stat.S_IMODE(os.stat(str(tmp_path / "private")).st_mode) == 0o600
