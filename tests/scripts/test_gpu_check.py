"""scripts/gpu-check.sh on this machine (no GPU: every step SKIPs with its reason, exit 0) and the parity
comparison its steps use, on CPU arrays."""
import importlib.util
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


@pytest.mark.skipif(gpu_check.find_gpu()[0], reason="this machine has a GPU: the script really runs its steps")
def test_without_a_gpu_every_step_skips_and_the_exit_status_is_0(tmp_path):
    report = tmp_path / "steps.json"
    done = subprocess.run(["sh", str(PROJECT / "scripts" / "gpu-check.sh"), "--json", str(report)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu-check: ")
    skipped = [line for line in lines if line.startswith("SKIP ")]
    assert [line.split(":")[0] for line in skipped] == ["SKIP " + step for step in gpu_check.STEPS]
    assert all(line.split(": ", 1)[1] for line in skipped)  # each with its reason
    assert not any(line.startswith(("PASS", "FAIL")) for line in lines)
    import json
    assert [step["status"] for step in json.loads(report.read_text())["steps"]] == ["SKIP"] * len(gpu_check.STEPS)


def test_nvml_sample_judgement():
    full = {"gpu_mem_used_mb": 512.0, "gpu_mem_total_mb": 81559.0, "power_mw": {"gpu": (70000, None)},
            "gpu_percent": 3, "temperatures_c": {"GPU": 31.0}}
    status, detail = gpu_check.judge_nvml(full)
    assert status == gpu_check.PASS and "not read" not in detail
    status, detail = gpu_check.judge_nvml({"gpu_mem_used_mb": 1.0, "gpu_mem_total_mb": 4096.0})
    assert status == gpu_check.PASS and "not read: power_mw, gpu_percent, temperatures_c" in detail
    assert gpu_check.judge_nvml({})[0] == gpu_check.FAIL
    assert gpu_check.judge_nvml({"gpu_mem_used_mb": 9.0, "gpu_mem_total_mb": 4.0})[0] == gpu_check.FAIL


def test_kernel_parity_judges_a_runner_on_real_jpegs():
    """The comparison the CuPy step makes, run here with the kernel's numpy arithmetic as the runner (PASS)
    and with a runner that swaps the colour planes (FAIL: the check can fail)."""
    from device.cuda_preprocess import reference_resize_normalize
    from tests.conftest import CIFAR_MINI, IMAGENETTE
    images = gpu_check.jpegs([str(d) for d in (CIFAR_MINI, IMAGENETTE) if d.is_dir()], per_folder=2)
    if not images:
        pytest.skip("no real JPEGs under ../shared/datasets")
    status, detail = gpu_check.kernel_parity(reference_resize_normalize, images)
    assert status == gpu_check.PASS, detail
    assert "max |kernel - numpy math| 0 " in detail
    status, detail = gpu_check.kernel_parity(lambda f, s: reference_resize_normalize(f, s)[:, ::-1].copy(), images)
    assert status == gpu_check.FAIL and "kernel vs its numpy math" in detail
