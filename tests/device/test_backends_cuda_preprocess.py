"""The CUDA preprocessing kernel's math (taps, blend, normalise, CHW) in numpy against PreprocessSpec (OpenCV),
and the kernel itself against the CPU path where a GPU and pycuda are present."""
import cv2
import numpy as np
import pytest

from device.cuda_preprocess import reference_resize_normalize, resize_taps
from contract.errors import DeviceError
from contract.preprocess import PreprocessSpec

ONE_GREY_LEVEL = 1.0 / (255 * 0.224)  # the largest step one uint8 level makes after normalising


def frame(height, width, seed=0):
    image = (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (5, 5), 0)


def test_taps_follow_opencv_rules():
    first, second, weight = resize_taps(4, 2)  # 2x down: centres fall half way between pixels
    assert first.tolist() == [0, 2] and second.tolist() == [1, 3] and np.allclose(weight, 0.5)
    first, second, weight = resize_taps(2, 4)  # 2x up: the outer samples clamp to the border pixel
    assert first.tolist() == [0, 0, 0, 1] and np.allclose(weight, [0, 0.25, 0.75, 0])
    assert resize_taps(10, 5, "nearest")[0].tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(DeviceError, match="CPU path"):
        resize_taps(10, 5, "area")


@pytest.mark.parametrize("source, size, interpolation", [((480, 640), 112, "linear"), ((37, 53), 64, "linear"),
                                                        ((20, 20), 64, "linear"), ((300, 100), 32, "nearest")])
def test_reference_math_matches_preprocess_spec(source, size, interpolation):
    spec = PreprocessSpec(size, size, interpolation=interpolation)
    image = frame(*source)
    expected, got = spec(image), reference_resize_normalize(image, spec)
    assert got.shape == expected.shape == (1, 3, size, size) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= ONE_GREY_LEVEL  # OpenCV rounds to uint8 between passes


def test_reference_math_respects_bgr_specs():
    spec = PreprocessSpec(32, 32, color="BGR")
    image = frame(64, 48)
    assert np.abs(reference_resize_normalize(image, spec) - spec(image)).max() <= ONE_GREY_LEVEL


@pytest.mark.gpu
def test_cuda_kernel_matches_cpu_path():
    try:
        import pycuda.autoprimaryctx  # noqa: F401  (makes the primary context current on this thread)
    except Exception as error:  # ImportError, or pycuda's own error when there is no GPU
        pytest.skip("needs pycuda and a CUDA GPU: {}".format(error))
    from device.cuda_preprocess import CudaPreprocessor
    for source, size in (((480, 640), 112), ((37, 53), 64)):
        spec = PreprocessSpec.square(size)
        image = frame(*source)
        got = CudaPreprocessor(spec)(image)
        np.testing.assert_allclose(got, reference_resize_normalize(image, spec), atol=1e-4)
        assert np.abs(got - spec(image)).max() <= ONE_GREY_LEVEL


def test_the_kernel_self_check_takes_a_faithful_kernel_and_refuses_a_wrong_or_failing_one():
    """enable_gpu_preprocess launches the kernel once and compares it with the CPU path: here the launch is
    stood in for by functions (the real kernel: scripts/gpu-check.sh), the comparison is the real one."""
    from contract.preprocess import PreprocessSpec
    from device.cuda_preprocess import kernel_self_check, reference_resize_normalize
    spec = PreprocessSpec.square(32)
    ok, how = kernel_self_check(lambda frame: reference_resize_normalize(frame, spec), spec)
    assert ok and "within" in how
    ok, why = kernel_self_check(lambda frame: spec(frame)[:, ::-1].copy(), spec)  # red and blue swapped
    assert not ok and "grey levels" in why
    ok, why = kernel_self_check(lambda frame: spec(frame) + 2.5 / (255 * 0.229), spec)  # 2.5 levels off
    assert not ok and "differs from the CPU path by 2.5" in why

    def failing(frame):
        raise RuntimeError("cuLaunchKernel failed: too many resources requested for launch")
    ok, why = kernel_self_check(failing, spec)
    assert not ok and "test launch failed (RuntimeError: cuLaunchKernel failed" in why
