"""scripts/gpu-check.sh on this machine (no GPU: every step SKIPs with its reason, exit 0) and the parity
comparison its steps use, on CPU arrays."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[2]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", PROJECT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def test_compare_outputs_passes_within_and_fails_beyond_the_tolerance():
    expected = np.linspace(-2, 2, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    ok, worst, why = gpu_check.compare_outputs(expected + 5e-6, expected, 1e-5)
    assert ok and worst == pytest.approx(5e-6, rel=0.1) and "<=" in why
    ok, worst, why = gpu_check.compare_outputs(expected + 2e-5, expected, 1e-5)
    assert not ok and worst == pytest.approx(2e-5, rel=0.1) and ">" in why


@pytest.mark.parametrize("got, why", [(np.zeros((1, 3, 4, 5), np.float32), "shape"),
                                      (np.full((1, 3, 4, 4), np.nan, np.float32), "not finite"),
                                      (np.zeros((0,), np.float32), "shape")])
def test_compare_outputs_never_passes_a_wrong_shape_or_nan(got, why):
    ok, worst, reason = gpu_check.compare_outputs(got, np.zeros((1, 3, 4, 4), np.float32), 1.0)
    assert not ok and worst == float("inf") and why in reason


def test_a_nan_in_the_reference_is_not_a_pass_either():
    expected = np.zeros((2, 2), np.float32)
    expected[0, 0] = np.inf
    assert not gpu_check.compare_outputs(np.zeros((2, 2), np.float32), expected, 1.0)[0]


def test_results_fail_only_when_a_step_failed(capsys):
    results = gpu_check.Results()
    results.add(gpu_check.SKIP, "nvml", "no GPU")
    results.add(gpu_check.PASS, "kernel-cupy", "ok")
    assert not results.failed
    results.add(gpu_check.FAIL, "gpu-tests", "1 failed")
    assert results.failed
    assert capsys.readouterr().out.splitlines() == ["SKIP nvml: no GPU", "PASS kernel-cupy: ok",
                                                    "FAIL gpu-tests: 1 failed"]


def test_real_jpegs_are_picked_the_same_way_every_time(tmp_path):
    import cv2
    for name in ("b/2.jpg", "a/1.jpg", "a/3.jpeg", "c/skip.png"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    assert [os.path.relpath(p, str(tmp_path)) for p in gpu_check.jpegs([str(tmp_path)], per_folder=10)] == [
        "a/1.jpg", "a/3.jpeg", "b/2.jpg"]


def load_gpu_kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", PROJECT / "scripts" / "gpu_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_kit = load_gpu_kit()


@pytest.fixture()
def kit(tmp_path):
    """A kit gathered without a registry (images and data from ../shared where it is there), as the tests
    can; its wheels folder gets a stand-in file so that the manifest has something to guard."""
    folder = tmp_path / "kit"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "pycuda-0.tar.gz").write_bytes(b"a source package")
    gpu_kit.gather(str(folder), offline=True, log=lambda line: None)
    return folder


@pytest.mark.skipif(gpu_check.find_gpu()[0], reason="this machine has a GPU: the script really runs its steps")
def test_without_a_gpu_the_kit_is_verified_every_gpu_step_skips_and_nothing_passes_as_run(tmp_path, kit):
    report = tmp_path / "steps.json"
    done = subprocess.run(["sh", str(PROJECT / "scripts" / "gpu-check.sh"), "--kit", str(kit), "--json",
                           str(report)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=120, env=dict(os.environ, PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu-check: ")
    assert lines[1].startswith("PASS kit: ") and "files" in lines[1]
    skipped = [line for line in lines if line.startswith("SKIP ")]
    assert [line.split(":")[0] for line in skipped] == ["SKIP " + step for step in gpu_check.STEPS[1:]]
    assert all(line.split(": ", 1)[1] for line in skipped)  # each with its reason
    assert lines[-1].startswith("gpu-check: SKIP: nothing ran on a GPU")
    assert json.loads(report.read_text())["verdict"] == lines[-1]


@pytest.mark.skipif(gpu_check.find_gpu()[0], reason="this machine has a GPU: the script really runs its steps")
def test_a_kit_that_did_not_arrive_whole_fails(kit):
    (kit / "wheels" / "pycuda-0.tar.gz").write_bytes(b"a source package cut")
    done = subprocess.run(["sh", str(PROJECT / "scripts" / "gpu-check.sh"), "--kit", str(kit)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert done.returncode == 1
    assert "FAIL kit: 1 of" in done.stdout and "wheels/pycuda-0.tar.gz differs from the manifest" in done.stdout


def test_the_verdict_passes_only_when_a_gpu_step_ran_and_none_failed():
    step = lambda name, status: {"step": name, "status": status, "detail": ""}  # noqa: E731
    assert gpu_check.verdict([step("kit", "PASS"), step("nvml", "SKIP")]).startswith("gpu-check: SKIP")
    assert gpu_check.verdict([step("kit", "PASS"), step("nvml", "PASS")]).startswith("gpu-check: PASS")
    assert gpu_check.verdict([step("nvml", "PASS"), step("gpu-tests", "FAIL")]).startswith("gpu-check: FAIL")


def test_all_gpu_tests_skipped_is_not_a_pass():
    assert gpu_check.passed_count("3 passed, 2 skipped in 1.2s") == 3
    assert gpu_check.passed_count("5 skipped in 0.3s") == 0


def test_pycuda_is_not_built_without_a_source_package_or_a_cuda_toolkit(tmp_path, monkeypatch):
    if gpu_check._importable("pycuda.driver"):
        pytest.skip("pycuda is installed here")
    results = gpu_check.Results()
    assert not gpu_check.build_pycuda(results, None, str(tmp_path))
    assert results.steps[-1]["status"] == "SKIP" and "source package" in results.steps[-1]["detail"]
    kit = tmp_path / "kit"
    (kit / "wheels").mkdir(parents=True)
    (kit / "wheels" / "pycuda-2026.1.tar.gz").write_bytes(b"x")
    monkeypatch.setattr(gpu_check, "find_nvcc", lambda: None)
    assert not gpu_check.build_pycuda(results, str(kit), str(tmp_path))
    assert results.steps[-1]["status"] == "SKIP" and "no CUDA toolkit" in results.steps[-1]["detail"]
