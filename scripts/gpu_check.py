"""What a CUDA machine without TensorRT or pycuda can verify of the device side, in one command.

    scripts/gpu-check.sh [--images DIR ...] [--data DIR] [--skip-training] [--json PATH]

Each step prints one line, ``PASS name: ...``, ``FAIL name: ...`` or ``SKIP name: <reason>``; the exit status
is 1 if any step failed, else 0 (a machine without a GPU skips every step and exits 0). The steps:

1. ``kernel-cupy``: the preprocessing kernel (device/cuda_preprocess.py's KERNEL_SOURCE, the very string
   pycuda compiles on the Jetson) compiled by CuPy's RawKernel and run on real JPEGs, against
   a. the kernel's arithmetic in numpy (``reference_resize_normalize``): max |difference| <= 1e-5;
   b. contract/preprocess.py (OpenCV, the one definition): <= 1e-5 where the frame is already at the network's
      size (normalise, colour order, CHW), <= one grey level (1 / (255 * 0.224) = 0.0175) where it is
      resized, because OpenCV rounds to uint8 between its resize passes and the kernel blends in float.
2. ``nvml``: the project's NVML telemetry (device.machine.NvmlMonitor) reads memory, power, utilisation,
   temperature.
3. ``onnxruntime-cuda``: the device's ONNX Runtime backend on the CUDA provider (onnxruntime-gpu), its
   outputs against the CPU provider's on the same real images.
4. ``host-evolve-cuda``: one generation of host-evolve trained on CUDA (fp16 autocast + channels_last, what
   host/train.py does on CUDA) on cifar10-mini, exported with its ONNX parity checks (dynamic and static
   batch), read back from summary.json and card.json.
5. ``gpu-tests``: the gpu-marked pytest tests of the device side (those needing pycuda or TensorRT skip).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
KERNEL_TOLERANCE = 1e-5
ONE_GREY_LEVEL = 1.0 / (255 * 0.224)  # one uint8 step after normalising, at the smallest ImageNet std
STEPS = ("kernel-cupy", "nvml", "onnxruntime-cuda", "host-evolve-cuda", "gpu-tests")
SHARED = os.path.join(os.path.dirname(REPO), "shared", "datasets")


class Results(object):
    """The step lines, printed as they come and kept for --json."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.steps = []

    def add(self, status, name, detail):
        assert status in (PASS, FAIL, SKIP)
        self.steps.append({"step": name, "status": status, "detail": detail})
        print("{} {}: {}".format(status, name, detail), file=self.out)
        self.out.flush()

    @property
    def failed(self):
        return any(step["status"] == FAIL for step in self.steps)


def compare_outputs(got, expected, tolerance):
    """(ok, max |got - expected|, reason) for two float arrays: a shape mismatch or a NaN/inf is never ok."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False, float("inf"), "shape {} is not {}".format(got.shape, expected.shape)
    if got.size == 0:
        return False, float("inf"), "nothing to compare (empty arrays)"
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(expected))):
        return False, float("inf"), "not finite (NaN or inf in the output)"
    worst = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    if worst <= tolerance:
        return True, worst, "max |difference| {:.3g} <= {:.3g}".format(worst, tolerance)
    return False, worst, "max |difference| {:.3g} > {:.3g}".format(worst, tolerance)


def find_gpu():
    """(True, name) when a CUDA GPU answers, else (False, why not)."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if count > 0:
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            return True, name.decode() if isinstance(name, bytes) else str(name)
        return False, "CuPy sees no CUDA device"
    except ImportError:
        pass
    except Exception as error:  # cupy's CUDARuntimeError when there is no driver or device
        return False, "CuPy sees no CUDA device ({})".format(str(error).splitlines()[0])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "no CUDA GPU here (no nvidia-smi, no CuPy)"
    try:
        listed = subprocess.run([smi, "-L"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                                universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, "nvidia-smi -L failed ({})".format(error)
    lines = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    if listed.returncode != 0 or not lines:
        return False, "nvidia-smi lists no GPU ({})".format(listed.stdout.strip().splitlines()[-1:] or "no output")
    return True, lines[0]


def jpegs(folders, per_folder=6):
    """Up to ``per_folder`` real JPEGs from each folder (recursively, sorted: the same ones every time)."""
    found = []
    for folder in folders:
        paths = sorted(glob.glob(os.path.join(folder, "**", "*.jp*g"), recursive=True) +
                       glob.glob(os.path.join(folder, "**", "*.JPEG"), recursive=True))
        step = max(1, len(paths) // per_folder)
        found.extend(paths[::step][:per_folder])
    return found


def check_kernel(results, images):
    name = "kernel-cupy"
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        return results.add(SKIP, name, "CuPy is not installed ({}): pip install cupy-cuda12x (or -13x)".format(error))
    if not images:
        return results.add(SKIP, name, "no JPEGs found: pass --images DIR (e.g. imagenette and cifar10-mini)")
    from device.cuda_preprocess import CupyPreprocessor
    status, detail = kernel_parity(lambda frame, spec: CupyPreprocessor(spec)(frame), images)
    results.add(status, name, detail)


def kernel_parity(run, images):
    """(status, detail): ``run(frame, spec)`` (the kernel) on each real JPEG, at three specs (RGB linear 112,
    BGR linear 64x96, RGB nearest 112) and at the image's own size, against the kernel's numpy arithmetic
    (<= 1e-5) and contract/preprocess.py (<= 1e-5 without a resize, <= one grey level with one)."""
    import cv2
    from device.cuda_preprocess import reference_resize_normalize
    from contract.preprocess import PreprocessSpec
    specs = [PreprocessSpec.square(112), PreprocessSpec(64, 96, color="BGR"),
             PreprocessSpec(112, 112, interpolation="nearest")]
    worst_math = worst_same = worst_resized = 0.0
    problems, compared, read = [], 0, 0
    for path in images:
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            problems.append("{} is not readable".format(path))
            continue
        read += 1
        same_size = [PreprocessSpec(frame.shape[0], frame.shape[1])] if min(frame.shape[:2]) >= 8 else []
        for spec in specs + same_size:
            got = run(frame, spec)
            ok, worst, why = compare_outputs(got, reference_resize_normalize(frame, spec), KERNEL_TOLERANCE)
            worst_math = max(worst_math, worst)
            if not ok:
                problems.append("{} at {}x{}: kernel vs its numpy math: {}".format(path, spec.height, spec.width, why))
            resized = (spec.height, spec.width) != frame.shape[:2]
            ok, worst, why = compare_outputs(got, spec(frame), ONE_GREY_LEVEL if resized else KERNEL_TOLERANCE)
            if resized:
                worst_resized = max(worst_resized, worst)
            else:
                worst_same = max(worst_same, worst)
            if not ok:
                problems.append("{} at {}x{}: kernel vs contract/preprocess.py: {}".format(
                    path, spec.height, spec.width, why))
            compared += 1
    if not compared:
        return FAIL, "no image could be compared: " + "; ".join(problems[:3])
    summary = ("{} JPEGs, {} comparisons; max |kernel - numpy math| {:.3g} (<= {:g}); vs contract/preprocess.py: "
               "{:.3g} without resize (<= {:g}), {:.3g} with resize (<= one grey level {:.4f})".format(
                   read, compared, worst_math, KERNEL_TOLERANCE, worst_same, KERNEL_TOLERANCE, worst_resized,
                   ONE_GREY_LEVEL))
    if problems:
        return FAIL, summary + "; " + "; ".join(problems[:3])
    return PASS, summary


def check_nvml(results):
    name = "nvml"
    try:
        import pynvml  # noqa: F401
    except ImportError as error:
        return results.add(SKIP, name, "nvidia-ml-py is not installed ({}): pip install nvidia-ml-py".format(error))
    from device.machine import NvmlMonitor
    monitor = NvmlMonitor()
    try:
        if not monitor.start():
            return results.add(FAIL, name, "NvmlMonitor.start() failed: NVML did not initialise")
        sample = monitor.sample()
    finally:
        monitor.close()
    status, detail = judge_nvml(sample)
    results.add(status, name, detail)


NVML_FIGURES = ("gpu_mem_used_mb", "gpu_mem_total_mb", "power_mw", "gpu_percent", "temperatures_c")


def judge_nvml(sample):
    """(status, detail) for one NvmlMonitor sample: memory must be read and plausible (every NVML GPU reports
    it); power, utilisation and temperature are listed when read (some boards do not report power)."""
    used, total = sample.get("gpu_mem_used_mb"), sample.get("gpu_mem_total_mb")
    if used is None or total is None:
        return FAIL, "NvmlMonitor.sample() read no GPU memory: {!r}".format(sample)
    if not (total > 0 and 0 <= used <= total):
        return FAIL, "implausible GPU memory: used {} MB of {} MB".format(used, total)
    missing = [key for key in NVML_FIGURES if key not in sample]
    return PASS, "read {}{}: {}".format(", ".join(key for key in NVML_FIGURES if key in sample),
                                        " (not read: {})".format(", ".join(missing)) if missing else "",
                                        json.dumps(sample, sort_keys=True))


def check_onnxruntime_cuda(results, images, work):
    name = "onnxruntime-cuda"
    try:
        import onnxruntime
    except ImportError as error:
        return results.add(SKIP, name, "onnxruntime is not installed ({})".format(error))
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return results.add(SKIP, name, "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); "
                                       "providers: {}".format(", ".join(onnxruntime.get_available_providers())))
    model = tiny_model(work)
    if model is None:
        return results.add(SKIP, name, "no ONNX to run: torch is needed to export one")
    import cv2
    from contract.model_info import ModelInfo
    spec = ModelInfo.from_onnx(model).spec
    frames = [cv2.imread(path, cv2.IMREAD_COLOR) for path in images[:4]] or [
        np.random.RandomState(0).randint(0, 255, (48, 64, 3)).astype(np.uint8)]
    batch = np.concatenate([spec(frame) for frame in frames if frame is not None])
    outputs = {}
    for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        session = onnxruntime.InferenceSession(model, providers=[provider])
        if session.get_providers()[0] != provider:
            return results.add(FAIL, name, "asked for {}, ONNX Runtime runs {}".format(provider, session.get_providers()))
        outputs[provider] = session.run(None, {session.get_inputs()[0].name: batch})[0]
    ok, _, why = compare_outputs(outputs["CUDAExecutionProvider"], outputs["CPUExecutionProvider"], 1e-3)
    results.add(PASS if ok else FAIL, name, "CUDA vs CPU provider on {} real images: {}".format(len(batch), why))


def tiny_model(work):
    """A 32 px, 3-class SqueezeNet exported by host/export.py (parity-checked), or None without torch."""
    try:
        import torch
        from contract.preprocess import PreprocessSpec
        from host.export import export_generation
        from host.genome import Genome
        from host.model import SqueezeNet
    except ImportError:
        return None
    torch.manual_seed(0)
    genome = Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)
    folder = os.path.join(work, "tiny")
    from pathlib import Path
    export_generation(SqueezeNet(genome), Path(folder), spec=PreprocessSpec.square(32), labels=["a", "b", "c"],
                      generation=0, parity_images=np.random.RandomState(0).rand(2, 3, 32, 32).astype("float32"))
    return os.path.join(folder, "model.onnx")


def check_training(results, data, work, timeout_s):
    name = "host-evolve-cuda"
    try:
        import torch
    except ImportError as error:
        return results.add(SKIP, name, "torch is not installed ({})".format(error))
    if not torch.cuda.is_available():
        return results.add(SKIP, name, "torch {} has no CUDA here (a CPU build, or no driver)".format(torch.__version__))
    if not data or not os.path.isdir(data):
        return results.add(SKIP, name, "no cifar10-mini at {!r}: pass --data DIR".format(data))
    run = os.path.join(work, "run")
    command = [sys.executable, "-c", "import sys; from host.cli import evolve_main; sys.exit(evolve_main())",
               "--data", data, "--out", run, "--generations", "1", "--epochs", "1", "--ancestor-epochs", "1",
               "--image-size", "32", "--device", "cuda", "--seed", "0"]
    environment = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.monotonic()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
                              universal_newlines=True, env=environment, cwd=REPO)
    except subprocess.TimeoutExpired:
        return results.add(FAIL, name, "host-evolve did not finish in {:.0f} s".format(timeout_s))
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = " | ".join(done.stdout.strip().splitlines()[-3:])
        return results.add(FAIL, name, "host-evolve exited {}: {}".format(done.returncode, tail))
    with open(os.path.join(run, "summary.json")) as handle:
        summary = json.load(handle)
    parities = []
    for generation in summary["generations"]:
        with open(os.path.join(run, generation["card"])) as handle:  # "card" is relative to RUN
            card = json.load(handle)
        parities.append(card["parity_max_abs_difference"])
        static = card.get("static_batch", {}).get("parity_max_abs_difference")
        if static is not None:
            parities.append(static)
    worst = max(parities) if parities else float("inf")
    ok = len(summary["generations"]) == 2 and worst <= 1e-4
    results.add(PASS if ok else FAIL, name, "{} generations trained on {} in {:.0f} s (fp16 autocast, channels_last), "
                "top1 {}; ONNX vs torch max |difference| {:.3g} (<= 1e-4, dynamic and static batch)".format(
                    len(summary["generations"]), torch.cuda.get_device_name(0), seconds,
                    [round(g["top1"], 3) for g in summary["generations"]], worst))


def check_gpu_tests(results, timeout_s):
    name = "gpu-tests"
    try:
        import pytest  # noqa: F401
    except ImportError as error:
        return results.add(SKIP, name, "pytest is not installed ({})".format(error))
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider",
               "tests/device", "tests/engines", "tests/calibration"]
    environment = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
                              universal_newlines=True, env=environment, cwd=REPO)
    except subprocess.TimeoutExpired:
        return results.add(FAIL, name, "pytest -m gpu did not finish in {:.0f} s".format(timeout_s))
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode == 5:  # pytest collected nothing: a selection that finds no test has checked nothing
        return results.add(SKIP, name, "no gpu-marked tests collected ({})".format(last))
    results.add(PASS if done.returncode == 0 else FAIL, name, "pytest -m gpu: {}".format(last))


def get_args_parser():
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", action="append", metavar="DIR",
                        help="folders of real JPEGs for the kernel check (default: ../shared/datasets/imagenette "
                             "and cifar10-mini where present)")
    parser.add_argument("--data", default=os.path.join(SHARED, "cifar10-mini"),
                        help="cifar10-mini for the training step (default %(default)s)")
    parser.add_argument("--skip-training", action="store_true", help="leave out the host-evolve step")
    parser.add_argument("--training-timeout", type=float, default=300.0, metavar="S")
    parser.add_argument("--json", metavar="PATH", help="also write the steps as JSON here")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    results = Results()
    present, what = find_gpu()
    print("gpu-check: {} | python {} | {}".format(what, sys.version.split()[0], time.strftime("%Y-%m-%d %H:%M:%S %Z")))
    if not present:
        for step in STEPS:
            results.add(SKIP, step, what)
    else:
        folders = args.images or [d for d in (os.path.join(SHARED, "imagenette"), os.path.join(SHARED, "cifar10-mini"))
                                  if os.path.isdir(d)]
        images = jpegs(folders)
        work = tempfile.mkdtemp(prefix="gpu-check-")
        try:
            for step, run in (("kernel-cupy", lambda: check_kernel(results, images)),
                              ("nvml", lambda: check_nvml(results)),
                              ("onnxruntime-cuda", lambda: check_onnxruntime_cuda(results, images, work)),
                              ("host-evolve-cuda", lambda: results.add(SKIP, "host-evolve-cuda", "--skip-training")
                               if args.skip_training else check_training(results, args.data, work,
                                                                          args.training_timeout)),
                              ("gpu-tests", lambda: check_gpu_tests(results, 180.0))):
                try:
                    run()
                except Exception as error:  # one broken step must not hide the others' results
                    results.add(FAIL, step, "{}: {}".format(type(error).__name__, error))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"gpu": what, "steps": results.steps}, handle, indent=2)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
