"""The preprocessing kernel's CUDA C source (device/cuda_preprocess.KERNEL_SOURCE), checked without a GPU:

- nvcc compiles it to PTX, with the entry point unmangled (``extern "C"``: what both pycuda's SourceModule
  with no_extern_c=True and CuPy's RawKernel look the name up by);
- g++ compiles the very same string as C++ with a five-line shim for ``__global__``/``blockIdx``/...,
  and running it over the whole launch grid on real JPEGs gives the numpy reference of its arithmetic
  (<= 1e-5) and contract/preprocess.py's output (<= 1e-5 without a resize, <= one grey level with one).

Neither is the GPU: the GPU run is scripts/gpu-check.sh (CuPy) and the gpu-marked test (pycuda)."""
import ctypes
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from device.cuda_preprocess import KERNEL_NAME, KERNEL_SOURCE, launch_shape, reference_resize_normalize, resize_taps
from contract.preprocess import PreprocessSpec
from tests.conftest import CIFAR_MINI, IMAGENETTE

ONE_GREY_LEVEL = 1.0 / (255 * 0.224)

CPU_SHIM = r"""
#define __global__
struct squished_dim3 { unsigned int x, y, z; };
static squished_dim3 blockIdx, blockDim, threadIdx;
#include "kernel.cu"
extern "C" void run_grid(const unsigned char* src, int src_width, int src_pitch,
    const int* x0, const int* x1, const float* wx, const int* y0, const int* y1, const float* wy,
    float* dst, int dst_height, int dst_width, float s0, float s1, float s2, float o0, float o1, float o2,
    int swap_rb, int grid_x, int grid_y, int block_x, int block_y)
{
    blockDim.x = block_x; blockDim.y = block_y; blockDim.z = 1;
    for (unsigned int by = 0; by < (unsigned) grid_y; ++by)
    for (unsigned int bx = 0; bx < (unsigned) grid_x; ++bx)
    for (unsigned int ty = 0; ty < (unsigned) block_y; ++ty)
    for (unsigned int tx = 0; tx < (unsigned) block_x; ++tx) {
        blockIdx.x = bx; blockIdx.y = by; blockIdx.z = 0;
        threadIdx.x = tx; threadIdx.y = ty; threadIdx.z = 0;
        resize_normalize(src, src_width, src_pitch, x0, x1, wx, y0, y1, wy, dst, dst_height, dst_width,
                         s0, s1, s2, o0, o1, o2, swap_rb);
    }
}
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH (the CUDA toolkit is not installed)")
def test_nvcc_compiles_the_kernel_with_an_unmangled_entry(tmp_path):
    (tmp_path / "kernel.cu").write_text(KERNEL_SOURCE)
    done = subprocess.run(["nvcc", "--ptx", "-o", str(tmp_path / "kernel.ptx"), str(tmp_path / "kernel.cu")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=240)
    assert done.returncode == 0, done.stdout
    ptx = (tmp_path / "kernel.ptx").read_text()
    assert ".visible .entry {}(".format(KERNEL_NAME) in ptx


@pytest.fixture(scope="module")
def kernel_on_cpu(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not on PATH")
    folder = tmp_path_factory.mktemp("kernel")
    (folder / "kernel.cu").write_text(KERNEL_SOURCE)
    (folder / "shim.cpp").write_text(CPU_SHIM)
    library = folder / "kernel.so"
    done = subprocess.run([compiler, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-I", str(folder), "-o",
                           str(library), str(folder / "shim.cpp")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout
    run_grid = ctypes.CDLL(str(library)).run_grid
    run_grid.restype = None

    def run(frame, spec):
        frame = np.ascontiguousarray(frame)
        taps = [np.ascontiguousarray(t) for t in resize_taps(frame.shape[1], spec.width, spec.interpolation) +
                resize_taps(frame.shape[0], spec.height, spec.interpolation)]
        out = np.full((1, 3, spec.height, spec.width), np.nan, dtype=np.float32)
        grid, block = launch_shape(spec)
        scale, offset = spec.affine()
        pointer = lambda array: array.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        run_grid(pointer(frame), ctypes.c_int(frame.shape[1]), ctypes.c_int(frame.shape[1] * 3),
                 *[pointer(t) for t in taps], pointer(out), ctypes.c_int(spec.height), ctypes.c_int(spec.width),
                 *[ctypes.c_float(float(v)) for v in list(scale) + list(offset)],
                 ctypes.c_int(1 if spec.color == "RGB" else 0), ctypes.c_int(grid[0]), ctypes.c_int(grid[1]),
                 ctypes.c_int(block[0]), ctypes.c_int(block[1]))
        return out
    return run


def real_jpegs():
    paths = sorted(CIFAR_MINI.glob("test/*/*.jpg"))[:2] + sorted(IMAGENETTE.rglob("*.JPEG"))[:2] + \
        sorted(IMAGENETTE.rglob("*.jpg"))[:2]
    if not paths:
        pytest.skip("no real JPEGs under {} or {}".format(CIFAR_MINI, IMAGENETTE))
    return paths


@pytest.mark.parametrize("spec", [PreprocessSpec.square(112), PreprocessSpec(64, 96, color="BGR"),
                                  PreprocessSpec(40, 40, interpolation="nearest")], ids=["rgb112", "bgr64x96", "near40"])
def test_the_kernel_source_gives_the_reference_on_real_jpegs(kernel_on_cpu, spec):
    for path in real_jpegs():
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        got = kernel_on_cpu(frame, spec)
        assert np.isfinite(got).all()  # every output pixel written (the grid covers the image)
        assert np.abs(got - reference_resize_normalize(frame, spec)).max() <= 1e-5, path
        assert np.abs(got - spec(frame)).max() <= ONE_GREY_LEVEL, path


def test_without_a_resize_the_kernel_is_device_preprocess_to_1e5(kernel_on_cpu):
    for path in real_jpegs():
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for color in ("RGB", "BGR"):
            spec = PreprocessSpec(frame.shape[0], frame.shape[1], color=color)
            assert np.abs(kernel_on_cpu(frame, spec) - spec(frame)).max() <= 1e-5, (path, color)
