"""device-bench: the library function's figures and the CLI's JSON, exit codes and error messages."""
import json
import subprocess
import sys

import pytest

from device.backends import open_backend
from device.bench import benchmark, main, parse_batches, profile_groups
from contract.errors import DeviceError
from tests.engines.tiny_onnx import tiny_onnx


def test_benchmark_library_function(tmp_path):
    with open_backend(tiny_onnx(), backend="onnxruntime", max_batch=4, cache_dir=str(tmp_path), log=None) as opened:
        result = benchmark(opened, batch=4, seconds=0.05, warmup_s=0.01)
    assert result["batch"] == 4 and result["backend"] == "onnxruntime" and result["precision"] == "fp32"
    copies = result["with_copies"]
    assert copies["runs"] >= 10 and copies["throughput_ips"] > 0
    latency = copies["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert copies["throughput_ips"] == pytest.approx(4 * copies["runs"] / copies["seconds"], rel=1e-2)
    assert "no host-device copies" in result["network_only"]["note"]


def test_cli_json_records_backend_precision_versions(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--model", tiny_onnx(), "--backend", "onnxruntime", "--batch", "1,2", "--seconds", "0.05",
                 "--warmup", "0.01", "--cache-dir", str(tmp_path), "--json", "--out", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert [r["batch"] for r in report["results"]] == [1, 2]
    assert [r["engine_profile"] for r in report["results"]] == [None, None]  # ONNX Runtime has no profile
    assert report["backend"]["backend"] == "onnxruntime" and report["backend"]["precision"] == "fp32"
    assert "onnxruntime" in report["backend"]["versions"] and "python" in report["backend"]["versions"]
    assert report["model_sha256"] == report["backend"]["model_sha256"] and report["generation"] == 0


@pytest.mark.parametrize("argv, message", [
    (["--model", "/no/such/model.onnx"], "does not exist"),
    (["--model", "TINY", "--backend", "cuda"], "backend 'cuda' is not one of"),
    (["--model", "TINY", "--precision", "fp64"], "precision 'fp64' is not one of"),
    (["--model", "TINY", "--batch", "1,x"], "is not a batch size"),
    (["--model", "TINY", "--batch", "0"], "must be integers >= 1"),
    (["--model", "TINY", "--seconds", "0"], "--seconds 0.0 must be above 0"),
    (["--model", "TINY", "--batch", "100000"], "--batch 100000: at most 1024 images a run"),
    (["--model", "TINY", "--batch", ",".join(["1"] * 17)], "at most 16 batch sizes"),
    (["--model", "TINY", "--seconds", "nan"], "--seconds nan must be above 0"),
    (["--model", "TINY", "--seconds", "1e9"], "at most 3600"),
    (["--model", "TINY", "--warmup", "inf"], "--warmup inf must be between 0 and 600"),
    (["--model", "TINY", "--warmup", "-1"], "--warmup -1.0 must be between 0 and 600"),
    (["--model", "TINY", "--workspace-mb", "100000000"], "--workspace-mb 100000000 must be between 16 and"),
    (["--model", "http://127.0.0.1:9/models/0/model.onnx"], "unreachable"),
])
def test_cli_bad_input_exits_2_with_a_message(argv, message, capsys, tmp_path):
    argv = [tiny_onnx() if arg == "TINY" else arg for arg in argv] + ["--cache-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("device-bench: error: ") and message in err and "Traceback" not in err


def test_cli_not_onnx_in_a_fresh_process_has_no_traceback(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    done = subprocess.run([sys.executable, "-m", "device.bench", "--model", str(bad)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert done.returncode == 2 and "is not an ONNX model" in done.stderr and "Traceback" not in done.stderr


def test_parse_batches():
    assert parse_batches("1,8") == [1, 8] and parse_batches("4") == [4]
    with pytest.raises(DeviceError):
        parse_batches("")


def test_batch_one_is_measured_on_its_own_engine_like_device_serves():
    """device-serve builds a (1, 1, 1) engine; a batch-1 figure from a (1, 4, 8) engine is another engine's."""
    assert profile_groups([1, 8]) == [[1], [8]]
    assert profile_groups([8, 1, 4]) == [[1], [8, 4]]
    assert profile_groups([1]) == [[1]] and profile_groups([2, 4]) == [[2, 4]]


def test_stability_flags_a_spread_and_a_stall_like_trtexec():
    from device.bench import stability
    steady = [0.001] * 50
    assert stability(steady, wall=0.05, batch=1)["stable"] is True
    spread = [0.001, 0.003] * 25  # CV 50 %
    check = stability(spread, wall=sum(spread), batch=1)
    assert check["stable"] is False and check["cv"] == pytest.approx(0.5) and "coefficient of variation" in check["why"]
    # the reported case: each run ~0.45 ms (2,200 img/s by the median) yet 12.5 img/s over the wall clock
    stalled = stability([0.00045] * 25, wall=2.0, batch=1)
    assert stalled["stable"] is False and stalled["cv"] == 0.0
    assert "of what the median latency implies" in stalled["why"] and stalled["median_implied_ips"] == 2222.22


class Measure(object):
    """A stand-in for device.bench.benchmark that hands out prepared per-run times (seconds) in turn."""

    def __init__(self, *runs):
        self.runs = list(runs)
        self.calls = 0

    def __call__(self, backend, batch, seconds, warmup_s):
        from device.bench import _figures
        times = self.runs[min(self.calls, len(self.runs) - 1)]
        self.calls += 1
        figures = _figures(times, sum(times), batch)
        return {"batch": batch, "backend": "stand-in", "precision": "fp32", "with_copies": figures,
                "network_only": figures, "throughput_ips": figures["throughput_ips"],
                "latency_ms": figures["latency_ms"], "stable": figures["stability"]["stable"]}


def test_an_unstable_batch_is_measured_again_and_one_that_stays_so_is_marked(tmp_path):
    from device.bench import bench_model
    unstable, steady = [0.001, 0.004] * 10, [0.002] * 20
    logged = []
    measure = Measure(unstable, steady)
    report = bench_model(tiny_onnx(), "onnxruntime", cache_dir=str(tmp_path), log=logged.append, measure=measure)
    assert measure.calls == 2 and report["stable"] is True
    assert report["results"][0]["attempts"] == 2 and report["results"][0]["throughput_ips"] == 500.0
    assert any("unstable" in line and "measuring again" in line for line in logged)
    logged.clear()
    measure = Measure(unstable)
    report = bench_model(tiny_onnx(), "onnxruntime", cache_dir=str(tmp_path), log=logged.append, measure=measure,
                         remeasure=2)
    assert measure.calls == 3 and report["stable"] is False and report["results"][0]["attempts"] == 3
    from device.bench import unstable_advice
    assert any(line.startswith("device-bench: warning: batch 1 stayed unstable") and unstable_advice() in line
               for line in logged)


def test_the_agents_report_carries_the_stability_and_its_kind_of_measurement(tmp_path):
    from device.agent_job import benchmark_report
    from device.bench import bench_model
    result = bench_model(tiny_onnx(), "onnxruntime", cache_dir=str(tmp_path), log=None,
                         measure=Measure([0.001, 0.004] * 10), remeasure=1)
    stats = benchmark_report(result, {"generation": 0}, {})["stats"]
    assert stats["measurement"] == "benchmark-b1" and stats["stable"] is False and stats["attempts"] == 2
    assert stats["cv"] == pytest.approx(0.6) and "coefficient of variation" in stats["unstable_why"]


def test_text_output_names_the_backend_once_and_has_mean_min_max_and_stability(tmp_path, capsys):
    code = main(["--model", tiny_onnx(), "--backend", "onnxruntime", "--batch", "1,2", "--seconds", "0.05",
                 "--warmup", "0.01", "--cache-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert sum("onnxruntime fp32" in line for line in out.splitlines()) == 1, out
    batches = [line for line in out.splitlines() if line.startswith("batch ")]
    assert len(batches) == 2
    for line in batches:
        assert all(word in line for word in ("median", "p90", "p95", "p99", "mean", "min", "max", "runs"))
        assert "coefficient of variation" in line and ("stable]" in line or "UNSTABLE]" in line)


def run_bench(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "device.bench", *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=120)


def test_trtexec_spellings_mean_what_they_mean_there():
    from tests.engines.tiny_onnx import tiny_onnx
    result = run_bench("--onnx=" + tiny_onnx(), "--shapes=input_0:2x3x32x32", "--duration", "0.2", "--warmUp", "20",
                       "--remeasure", "0", "--backend", "onnxruntime", "--json")
    assert result.returncode == 0, result.stderr
    import json
    report = json.loads(result.stdout)
    assert [r["batch"] for r in report["results"]] == [2]
    assert report["results"][0]["warmup_s"] == 0.02 and report["results"][0]["duration_s"] == 0.2
    for flags, words in ((["--loadEngine", "e.engine"], "Give --onnx the ONNX"),
                         (["--fp16", "--precision", "int8"], "contradict each other"),
                         (["--shapes", "input_0:8x3"], "NAME:NxCxHxW"),
                         (["--saveEngine", "e.engine", "--backend", "onnxruntime"], "builds no TensorRT engine")):
        refused = run_bench("--onnx", tiny_onnx(), *flags)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, flags


def test_the_figures_name_median_p90_walltime_and_the_cv_and_advise_by_platform():
    from device.bench import unstable_advice
    from tests.engines.tiny_onnx import tiny_onnx
    result = run_bench("--onnx", tiny_onnx(), "--duration", "0.2", "--remeasure", "0", "--backend", "onnxruntime",
                       "--batch", "1,2", "--check")
    assert result.returncode in (0, 1), result.stderr
    line = [l for l in result.stdout.splitlines() if l.startswith("batch   1:")][0]
    for words in ("median", "p90", "host walltime", "coefficient of variation"):
        assert words in line, line
    assert (result.stdout + result.stderr).count("device-bench: check:") <= 1  # one ONNX Runtime session, one check
    assert "jetson_clocks" in unstable_advice(jetson=True) and "jetson_clocks" not in unstable_advice(jetson=False)
