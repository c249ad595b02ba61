"""host-serve under load (bench/load_host_serve.py, small): 10 simulated devices reporting at 10 Hz for 3 s to
the real host-serve process on loopback; every report answered 201 and stored exactly once, none lost, the
database intact. The figures of the full trial (50 devices, a minute) are the bench's, in docs/reliability.md."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load_host_serve.py"


def test_ten_devices_at_ten_hertz_lose_and_duplicate_nothing():
    spec = importlib.util.spec_from_file_location("load_host_serve", str(BENCH))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.load(devices=10, hz=10, seconds=3, log=lambda line: None)
    assert result["offered"] == result["sent"] == result["rows"] == 300
    assert result["answered"] == {"201": 300}
    assert result["lost"] == result["lost_after_201"] == result["duplicated"] == result["unexpected_rows"] == 0
    assert result["integrity_check"] == "ok" and not result["client_errors"]
    assert module.passed(result)
