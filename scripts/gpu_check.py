"""What a CUDA machine without TensorRT can verify of the device side, in one command.

    scripts/gpu-check.sh [--kit DIR] [--images DIR ...] [--data DIR] [--skip-training] [--json PATH]

Each step prints one line, ``PASS name: ...``, ``FAIL name: ...`` or ``SKIP name: <reason>``, and a last line
sums them up; the exit status is 1 if any step failed, else 0. The verdict is PASS only when something ran and
nothing failed (a machine without a GPU skips every GPU step, says "nothing ran on a GPU" and exits 0).

The kit (scripts/gpu-kit.sh, gathered beforehand on a machine with a registry; default ``gpu-kit/`` when it is
there) brings what the GPU machine lacks and cannot download: pycuda's source package and its dependencies,
onnx-simplifier, real images and a slice of cifar10-mini (../shared does not travel). The steps:

0. ``kit``: the kit's files against its manifest (sizes, sha256); runs on any machine.
0. ``pycuda-build``: pycuda built from the kit's source package against this machine's CUDA (into a scratch
   folder, no index), and onnx-simplifier installed beside it; then imported.
0. ``pycuda-kernel``: the production path of device/cuda_preprocess.py as the Jetson runs it: the primary
   context held by a worker thread (device.backends.cuda_thread.CudaThread), the kernel compiled by pycuda's
   SourceModule, pointer arguments (the output written through a raw device address, as into a TensorRT
   binding), parity with the CPU path on real JPEGs as in 1., and the enable-time self-check.
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
   host/evolve/train.py does on CUDA) on cifar10-mini, exported with its ONNX parity checks (dynamic and static
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
STEPS = ("kit", "pycuda-build", "pycuda-kernel", "kernel-cupy", "nvml", "onnxruntime-cuda", "host-evolve-cuda",
         "gpu-tests")
SHARED = os.path.join(os.path.dirname(REPO), "shared", "datasets")
DEFAULT_KIT = os.path.join(REPO, "gpu-kit")


INSTALLED = []  # folders the kit's packages were installed into (pycuda, onnxsim): on sys.path and PYTHONPATH


def python_path():
    """PYTHONPATH for the steps' subprocesses: the repo, what the kit installed, then the caller's."""
    return os.pathsep.join([REPO] + INSTALLED + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))


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
    from contract.images import read_image
    from device.cuda_preprocess import reference_resize_normalize
    from contract.preprocess import PreprocessSpec
    specs = [PreprocessSpec.square(112), PreprocessSpec(64, 96, color="BGR"),
             PreprocessSpec(112, 112, interpolation="nearest")]
    worst_math = worst_same = worst_resized = 0.0
    problems, compared, read = [], 0, 0
    for path in images:
        frame, why = read_image(path)  # the device's one reader (contract.images)
        if frame is None:
            problems.append("{} is not used: {}".format(path, why))
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
    """A 32 px, 3-class SqueezeNet exported by host/evolve/export.py (parity-checked), or None without torch."""
    try:
        import torch
        from contract.preprocess import PreprocessSpec
        from host.evolve.export import export_generation
        from host.evolve.genome import Genome
        from host.evolve.model import SqueezeNet
    except ImportError:
        return None
    torch.manual_seed(0)
    genome = Genome(num_classes=3, conv1=8, fires=((4, 8, 8),) * 8)
    folder = os.path.join(work, "tiny")
    from pathlib import Path
    export_generation(SqueezeNet(genome), Path(folder), spec=PreprocessSpec.square(32), labels=["a", "b", "c"],
                      generation=0, parity_images=np.random.RandomState(0).rand(2, 3, 32, 32).astype("float32"))
    from contract.generation_files import MODEL_ONNX
    return os.path.join(folder, MODEL_ONNX)


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
    command = [sys.executable, "-c", "import sys; from host.evolve.cli import evolve_main; sys.exit(evolve_main())",
               "--data", data, "--out", run, "--generations", "1", "--epochs", "1", "--ancestor-epochs", "1",
               "--image-size", "32", "--device", "cuda", "--seed", "0",
               "--max-drop", "1"]  # a mechanics check: one epoch on a small slice is not expected to learn
    environment = dict(os.environ, PYTHONPATH=python_path())
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
    environment = dict(os.environ, PYTHONPATH=python_path())
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
                              universal_newlines=True, env=environment, cwd=REPO)
    except subprocess.TimeoutExpired:
        return results.add(FAIL, name, "pytest -m gpu did not finish in {:.0f} s".format(timeout_s))
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode == 5:  # pytest collected nothing: a selection that finds no test has checked nothing
        return results.add(SKIP, name, "no gpu-marked tests collected ({})".format(last))
    if done.returncode == 0 and not passed_count(last):  # every test skipped: nothing was checked
        skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
        return results.add(SKIP, name, "every gpu test skipped ({}): {}".format(last, " | ".join(skips[:3])))
    results.add(PASS if done.returncode == 0 else FAIL, name, "pytest -m gpu: {}".format(last))


def passed_count(summary):
    """The N of "N passed" in pytest's last line (0 when absent)."""
    import re
    match = re.search(r"(\d+) passed", summary)
    return int(match.group(1)) if match else 0


def check_kit(results, kit):
    name = "kit"
    if not kit:
        return results.add(SKIP, name, "no kit (scripts/gpu-kit.sh gathers one into gpu-kit/; pass --kit DIR)")
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_kit", os.path.join(REPO, "scripts", "gpu_kit.py"))
    gpu_kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_kit)
    ok, detail = gpu_kit.verify(kit)
    results.add(PASS if ok else FAIL, name, detail)


def find_nvcc():
    """nvcc's path: on PATH, under CUDA_HOME / CUDA_PATH / /usr/local/cuda, or from NVIDIA's pip wheels."""
    found = shutil.which("nvcc")
    if found:
        return found
    roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")] + ["/usr/local/cuda"]
    roots += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in [r for r in roots if r]:
        if os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    for folder in sys.path:
        candidate = os.path.join(folder, "nvidia", "cuda_nvcc", "bin", "nvcc")
        if os.path.isfile(candidate):
            return candidate
    return None


def pip_install(arguments, target, timeout_s, extra_path=()):
    """``pip install --no-index --target target ...``; (ok, last lines)."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--target",
               target] + arguments
    environment = dict(os.environ)
    if extra_path:
        environment["PYTHONPATH"] = os.pathsep.join(list(extra_path) + [environment.get("PYTHONPATH", "")])
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=timeout_s, env=environment)
    except subprocess.TimeoutExpired:
        return False, "pip install did not finish in {:.0f} s".format(timeout_s)
    return done.returncode == 0, " | ".join(done.stdout.strip().splitlines()[-3:])


def build_pycuda(results, kit, work, timeout_s=400.0):
    """pycuda (and onnxsim, where missing) from the kit, into ``work/site``; True when pycuda imports."""
    name = "pycuda-build"
    site = os.path.join(work, "site")
    wheels = os.path.join(kit, "wheels") if kit else None
    have_onnxsim = _importable("onnxsim")
    if not have_onnxsim and wheels and glob.glob(os.path.join(wheels, "onnxsim-*")):
        ok, last = pip_install(["--find-links", wheels, "onnxsim"], site, 300)
        if ok:
            _use(site)
        have_onnxsim = ok
    if _importable("pycuda.driver"):
        return results.add(PASS, name, "pycuda {} already installed; onnxsim {}".format(
            _version("pycuda"), "there" if have_onnxsim else "missing")) or True
    if not wheels or not glob.glob(os.path.join(wheels, "pycuda-*.tar.gz")):
        return results.add(SKIP, name, "pycuda is not installed and no kit brings its source package "
                                       "(scripts/gpu-kit.sh)") and False
    nvcc = find_nvcc()
    if nvcc is None:
        return results.add(SKIP, name, "no CUDA toolkit (nvcc, cuda.h) here to build pycuda against") and False
    cuda_root = os.path.dirname(os.path.dirname(nvcc))
    tools = os.path.join(work, "build-tools")
    ok, last = pip_install(["--find-links", wheels, "setuptools", "wheel"], tools, 120)
    if not ok:
        return results.add(FAIL, name, "setuptools/wheel from the kit: " + last) and False
    started = time.monotonic()
    os.environ["CUDA_ROOT"] = cuda_root
    os.environ["PATH"] = os.path.dirname(nvcc) + os.pathsep + os.environ.get("PATH", "")
    ok, last = pip_install(["--find-links", wheels, "--no-build-isolation", "pycuda"], site, timeout_s,
                           extra_path=[tools])
    if not ok:
        return results.add(FAIL, name, "building pycuda against {} failed: {}".format(cuda_root, last)) and False
    _use(site)
    try:
        import pycuda.driver as cuda
        cuda.init()
        device = cuda.Device(0).name()
    except Exception as error:
        return results.add(FAIL, name, "pycuda built but does not start: {}: {}".format(
            type(error).__name__, error)) and False
    results.add(PASS, name, "pycuda {} built against {} in {:.0f} s, sees {}; onnxsim {}".format(
        _version("pycuda"), cuda_root, time.monotonic() - started, device, "there" if have_onnxsim else "missing"))
    return True


def _use(folder):
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if folder not in INSTALLED:
        INSTALLED.append(folder)


def _importable(module):
    import importlib
    try:
        importlib.import_module(module)
        return True
    except Exception:  # ImportError, or a CUDA library that will not load
        return False


def _version(module):
    import importlib
    try:
        return getattr(importlib.import_module(module), "VERSION_TEXT", None) or \
            getattr(importlib.import_module(module), "__version__", "?")
    except Exception:
        return "?"


def check_pycuda_kernel(results, images):
    """The Jetson's path: CudaThread (primary context on a worker thread), SourceModule, pointer arguments."""
    name = "pycuda-kernel"
    if not _importable("pycuda.driver"):
        return results.add(SKIP, name, "pycuda is not importable here (see pycuda-build)")
    if find_nvcc() is None:
        return results.add(SKIP, name, "no nvcc: pycuda's SourceModule compiles with it")
    if not images:
        return results.add(SKIP, name, "no JPEGs: pass --kit or --images DIR")
    from contract.images import read_image
    from contract.preprocess import PreprocessSpec
    from device.backends.cuda_thread import CudaThread
    from device.cuda_preprocess import CudaPreprocessor, kernel_self_check
    thread = CudaThread(name="gpu-check-cuda")
    try:
        kernels = {}

        def run(frame, spec):  # every CUDA call on the thread that holds the context, as the backend does
            def here():
                key = spec.to_json()
                if key not in kernels:
                    kernels[key] = CudaPreprocessor(spec)
                return kernels[key](frame)
            return thread.call(here)
        status, detail = kernel_parity(run, images)
        frame = next(f for f, _ in (read_image(p) for p in images) if f is not None)
        spec = PreprocessSpec.square(112)

        def through_a_raw_pointer():  # the kernel writing at an int address, as into a TensorRT binding
            import pycuda.driver as cuda
            kernel = CudaPreprocessor(spec)
            allocation = cuda.mem_alloc(3 * spec.height * spec.width * 4)
            stream = cuda.Stream()
            kernel.to_device(frame, int(allocation), stream)
            stream.synchronize()
            out = np.empty((1, 3, spec.height, spec.width), np.float32)
            cuda.memcpy_dtoh(out, allocation)
            allocation.free()
            return out, kernel(frame), kernel_self_check(kernel, spec)
        raw, direct, (self_ok, self_how) = thread.call(through_a_raw_pointer)
        ok, _, why = compare_outputs(raw, direct, 0.0)
        if not ok:
            status, detail = FAIL, detail + "; through a raw pointer: " + why
        else:
            detail += "; a raw int pointer as the destination gives the same output"
        if not self_ok:
            status, detail = FAIL, detail + "; the enable-time self-check refused it: " + self_how
        else:
            detail += "; enable-time self-check: " + self_how
        results.add(status, name, "on a worker thread holding the primary context: " + detail)
    finally:
        thread.close()


def get_args_parser():
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", default=DEFAULT_KIT if os.path.isdir(DEFAULT_KIT) else None,
                        help="the folder scripts/gpu-kit.sh gathered (default gpu-kit/ when it is there)")
    parser.add_argument("--images", action="append", metavar="DIR",
                        help="folders of real JPEGs for the kernel check (default: ../shared/datasets/imagenette "
                             "and cifar10-mini where present)")
    parser.add_argument("--data", default=None,
                        help="cifar10-mini for the training step (default: the kit's, else ../shared's)")
    parser.add_argument("--skip-training", action="store_true", help="leave out the host-evolve step")
    parser.add_argument("--training-timeout", type=float, default=300.0, metavar="S")
    parser.add_argument("--json", metavar="PATH", help="also write the steps as JSON here")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    results = Results()
    present, what = find_gpu()
    print("gpu-check: {} | python {} | {}".format(what, sys.version.split()[0], time.strftime("%Y-%m-%d %H:%M:%S %Z")))
    kit = args.kit
    try:
        check_kit(results, kit)
    except Exception as error:
        results.add(FAIL, "kit", "{}: {}".format(type(error).__name__, error))
    if not present:
        for step in STEPS[1:]:
            results.add(SKIP, step, what)
    else:
        in_kit = [os.path.join(kit, "images"), os.path.join(kit, "cifar10-mini")] if kit else []
        folders = args.images or [d for d in in_kit + [os.path.join(SHARED, "imagenette"),
                                                       os.path.join(SHARED, "cifar10-mini")] if os.path.isdir(d)]
        images = jpegs(folders)
        data = args.data or next((d for d in ([os.path.join(kit, "cifar10-mini")] if kit else []) +
                                  [os.path.join(SHARED, "cifar10-mini")] if os.path.isdir(d)), None)
        work = tempfile.mkdtemp(prefix="gpu-check-")
        try:
            for step, run in (("pycuda-build", lambda: build_pycuda(results, kit, work)),
                              ("pycuda-kernel", lambda: check_pycuda_kernel(results, images)),
                              ("kernel-cupy", lambda: check_kernel(results, images)),
                              ("nvml", lambda: check_nvml(results)),
                              ("onnxruntime-cuda", lambda: check_onnxruntime_cuda(results, images, work)),
                              ("host-evolve-cuda", lambda: results.add(SKIP, "host-evolve-cuda", "--skip-training")
                               if args.skip_training else check_training(results, data, work,
                                                                          args.training_timeout)),
                              ("gpu-tests", lambda: check_gpu_tests(results, 180.0))):
                try:
                    run()
                except Exception as error:  # one broken step must not hide the others' results
                    results.add(FAIL, step, "{}: {}".format(type(error).__name__, error))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(verdict(results.steps))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"gpu": what, "steps": results.steps, "verdict": verdict(results.steps)}, handle, indent=2)
    return 1 if results.failed else 0


def verdict(steps):
    """The last line: PASS only when a GPU step ran and none failed."""
    counts = {status: sum(1 for s in steps if s["status"] == status) for status in (PASS, FAIL, SKIP)}
    ran_on_gpu = [s for s in steps if s["step"] != "kit" and s["status"] != SKIP]
    text = "{} passed, {} failed, {} skipped".format(counts[PASS], counts[FAIL], counts[SKIP])
    if counts[FAIL]:
        return "gpu-check: FAIL ({})".format(text)
    if not ran_on_gpu:
        return "gpu-check: SKIP: nothing ran on a GPU ({})".format(text)
    return "gpu-check: PASS ({})".format(text)


if __name__ == "__main__":
    sys.exit(main())
