"""Preprocessing on the GPU: one pycuda kernel does resize + colour order + normalise + HWC -> CHW, writing
straight into a network input buffer. It follows contract.preprocess.PreprocessSpec (the CPU path, OpenCV):

1. Resize taps are computed here on the host, once per source size, with OpenCV's INTER_LINEAR rule
   (sample centres aligned, ``src = (dst + 0.5) * scale - 0.5``, clamped at the borders) or INTER_NEAREST
   (``src = floor(dst * scale)``), so the kernel only gathers and blends.
2. Each output pixel blends its 2x2 source pixels in float (OpenCV rounds to uint8 in between, so the two
   paths differ by at most about one grey level: 1 / (255 * std) ~ 0.017 after normalising).
3. ``x * scale[c] + offset[c]`` per output channel, with ``spec.affine()``; channel c reads source channel
   ``2 - c`` when the spec wants RGB from a BGR frame.

``resize_taps`` and ``reference_resize_normalize`` are that math in numpy (tested against PreprocessSpec on
the CPU); the kernel is the same math in CUDA C, checked against the CPU path by a gpu-marked test.

``KERNEL_SOURCE`` is one string that two compilers take unchanged: pycuda's ``SourceModule(...,
no_extern_c=True)`` on the Jetson (:class:`CudaPreprocessor`) and CuPy's ``RawKernel`` on any CUDA machine
(:class:`CupyPreprocessor`, what ``scripts/gpu-check.sh`` runs): plain CUDA C, ``extern "C"`` so the symbol
is not mangled, no pycuda-only macros or headers, 32-bit ints and floats for every scalar argument.
"""
import numpy as np

from contract.errors import DeviceError

KERNEL_NAME = "resize_normalize"
KERNEL_SOURCE = r"""
extern "C" __global__ void resize_normalize(
    const unsigned char* src, int src_width, int src_pitch,
    const int* x0, const int* x1, const float* wx,
    const int* y0, const int* y1, const float* wy,
    float* dst, int dst_height, int dst_width,
    float scale0, float scale1, float scale2, float offset0, float offset1, float offset2, int swap_rb)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_width || y >= dst_height) return;
    const float ax = wx[x], ay = wy[y];
    const unsigned char* row0 = src + y0[y] * src_pitch;
    const unsigned char* row1 = src + y1[y] * src_pitch;
    const int left = x0[x] * 3, right = x1[x] * 3;
    const float scale[3] = {scale0, scale1, scale2};
    const float offset[3] = {offset0, offset1, offset2};
    const int plane = dst_height * dst_width;
    for (int c = 0; c < 3; ++c) {
        const int s = swap_rb ? 2 - c : c;
        const float top = (1.0f - ax) * row0[left + s] + ax * row0[right + s];
        const float bottom = (1.0f - ax) * row1[left + s] + ax * row1[right + s];
        const float value = (1.0f - ay) * top + ay * bottom;
        dst[c * plane + y * dst_width + x] = value * scale[c] + offset[c];
    }
}
"""


def resize_taps(source, target, interpolation="linear"):
    """For each of ``target`` output positions: (first index, second index, weight of the second), as
    int32/int32/float32 arrays, reproducing OpenCV's ``resize`` sampling along one axis."""
    scale = float(source) / float(target)
    positions = np.arange(target, dtype=np.float64)
    if interpolation == "nearest":
        first = np.minimum(np.floor(positions * scale).astype(np.int64), source - 1)
        return first.astype(np.int32), first.astype(np.int32), np.zeros(target, dtype=np.float32)
    if interpolation != "linear":
        raise DeviceError("the CUDA preprocessing does {} interpolation only, the spec says {!r}: use the CPU "
                          "path (PreprocessSpec) for this model".format("linear and nearest", interpolation))
    centre = (positions + 0.5) * scale - 0.5
    first = np.floor(centre).astype(np.int64)
    weight = centre - first
    left = first < 0  # before the first pixel: take it alone
    first[left], weight[left] = 0, 0.0
    right = first >= source - 1  # at or past the last pixel: take it alone
    first[right], weight[right] = source - 1, 0.0
    second = np.minimum(first + 1, source - 1)
    return first.astype(np.int32), second.astype(np.int32), weight.astype(np.float32)


def _frame_bgr(frame):
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
        raise DeviceError("CUDA preprocessing takes a uint8 H x W x 3 BGR frame, got {} {}".format(
            frame.dtype, frame.shape))
    return np.ascontiguousarray(frame)


def reference_resize_normalize(frame_bgr, spec):
    """The kernel's arithmetic in numpy: BGR uint8 H x W x 3 -> float32 1 x 3 x h x w."""
    frame = _frame_bgr(frame_bgr).astype(np.float32)
    x0, x1, wx = resize_taps(frame.shape[1], spec.width, spec.interpolation)
    y0, y1, wy = resize_taps(frame.shape[0], spec.height, spec.interpolation)
    ax, ay = wx[None, :, None], wy[:, None, None]
    top = (1.0 - ax) * frame[y0][:, x0] + ax * frame[y0][:, x1]
    bottom = (1.0 - ax) * frame[y1][:, x0] + ax * frame[y1][:, x1]
    resized = (1.0 - ay) * top + ay * bottom  # h x w x 3, BGR
    if spec.color == "RGB":
        resized = resized[:, :, ::-1]
    scale, offset = spec.affine()
    return np.ascontiguousarray((resized * scale + offset).transpose(2, 0, 1)[None].astype(np.float32))


#: How far the kernel's output may be from the CPU path's (contract.preprocess, OpenCV), in grey levels of the
#: uint8 input: resizing arithmetic differs in rounding, never by more than one level.
SELF_CHECK_TOLERANCE_LEVELS = 1.0


def self_check_frame(height=75, width=101):
    """A deterministic BGR test frame of odd size (gradients and a disc in all three channels): every tap of a
    resize and every channel of the colour swap show in the output."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (255 * xs / (width - 1)).astype(np.uint8)
    frame[..., 1] = (255 * ys / (height - 1)).astype(np.uint8)
    frame[..., 2] = np.where((xs - width / 3.0) ** 2 + (ys - height / 2.0) ** 2 < (height / 4.0) ** 2, 230, 20)
    return frame


def kernel_self_check(preprocess, spec, frame=None, tolerance=SELF_CHECK_TOLERANCE_LEVELS):
    """Launch ``preprocess(frame) -> float32 1x3xHxW`` (the kernel, copied back) once on a synthetic frame and
    compare it with the CPU path ``spec(frame)``. Returns (True, what it measured) or (False, why not): an
    exception of the launch, a wrong shape, NaN, or a difference above ``tolerance`` grey levels
    (``|gpu - cpu| * 255 * std`` per channel: the normalised difference in uint8 levels)."""
    frame = self_check_frame() if frame is None else frame
    try:
        produced = np.asarray(preprocess(frame), dtype=np.float32)
    except Exception as error:  # pycuda's LaunchError, LogicError...: the kernel does not run here
        return False, "its test launch failed ({}: {})".format(type(error).__name__, str(error).strip()[:160])
    expected = spec(frame)
    if produced.shape != expected.shape:
        return False, "its test launch gave shape {}, not {}".format(produced.shape, expected.shape)
    if not np.all(np.isfinite(produced)):
        return False, "its test launch gave NaN or infinite values"
    levels = np.abs(produced - expected) * (255.0 * np.asarray(spec.std, np.float32)).reshape(1, -1, 1, 1)
    worst = float(levels.max())
    if worst > tolerance:
        return False, "its test launch differs from the CPU path by {:.1f} grey levels (at most {:.0f} " \
                      "allowed)".format(worst, tolerance)
    return True, "test launch within {:.2f} grey levels of the CPU path".format(worst)


class CudaPreprocessor(object):
    """The kernel with its buffers. Use it on the thread that holds the CUDA context (the backend's).

    ``to_device(frame, destination, stream)`` writes 3 x h x w float32 at device pointer ``destination``
    (e.g. a TensorRT input buffer plus ``index * 3*h*w*4``); ``__call__(frame)`` returns it on the host.
    """

    def __init__(self, spec, block=(16, 16)):
        import pycuda.driver as cuda
        from pycuda.compiler import SourceModule
        if spec.resize != "stretch":
            raise DeviceError("CUDA preprocessing supports resize 'stretch' only")
        if spec.channels != 3:
            raise DeviceError("CUDA preprocessing writes 3 channels; this model takes {} ({})".format(
                spec.channels, spec.color))
        resize_taps(2, 1, spec.interpolation)  # refuses 'area' before compiling
        self.spec = spec
        self._cuda = cuda
        self._kernel = SourceModule(KERNEL_SOURCE, no_extern_c=True).get_function(KERNEL_NAME)
        self._grid, self._block = launch_shape(spec, block)
        self._source_shape = None
        self._taps = None
        self._staging = None
        self._source = None
        self._output = None
        scale, offset = spec.affine()
        self._affine = [np.float32(v) for v in list(scale) + list(offset)]

    def _prepare(self, frame):
        cuda = self._cuda
        if frame.shape != self._source_shape:
            self._source_shape = frame.shape
            self._staging = cuda.pagelocked_empty(frame.shape, np.uint8)
            self._source = cuda.mem_alloc(self._staging.nbytes)
            taps = resize_taps(frame.shape[1], self.spec.width, self.spec.interpolation) + \
                resize_taps(frame.shape[0], self.spec.height, self.spec.interpolation)
            self._taps = [cuda.to_device(np.ascontiguousarray(t)) for t in taps]

    def to_device(self, frame_bgr, destination, stream=None):
        """``destination``: a pycuda DeviceAllocation, or a raw device pointer (an int, e.g. a TensorRT
        binding address), passed as ``numpy.uintp``: pycuda raises TypeError on a bare Python int."""
        if isinstance(destination, (int, np.integer)):
            destination = np.uintp(int(destination))
        frame = _frame_bgr(frame_bgr)
        self._prepare(frame)
        np.copyto(self._staging, frame)
        self._cuda.memcpy_htod_async(self._source, self._staging, stream)
        width, height = self.spec.width, self.spec.height
        self._kernel(self._source, np.int32(frame.shape[1]), np.int32(frame.shape[1] * 3),
                     self._taps[0], self._taps[1], self._taps[2], self._taps[3], self._taps[4], self._taps[5],
                     destination, np.int32(height), np.int32(width), *(self._affine + [
                         np.int32(1 if self.spec.color == "RGB" else 0)]),
                     block=self._block, grid=self._grid, stream=stream)

    def __call__(self, frame_bgr):
        cuda = self._cuda
        count = 3 * self.spec.height * self.spec.width
        if self._output is None:
            self._output = cuda.mem_alloc(count * 4)
        self.to_device(frame_bgr, self._output)
        result = np.empty((1, 3, self.spec.height, self.spec.width), dtype=np.float32)
        cuda.memcpy_dtoh(result, self._output)
        return result


def launch_shape(spec, block=(16, 16)):
    """(grid, block) for one output of ``spec``: one thread per output pixel, 2-D blocks of ``block``."""
    grid = ((spec.width + block[0] - 1) // block[0], (spec.height + block[1] - 1) // block[1], 1)
    return grid, (int(block[0]), int(block[1]), 1)


class CupyPreprocessor(object):
    """The same ``KERNEL_SOURCE`` compiled by CuPy's RawKernel (NVRTC): for checking the kernel on a CUDA
    machine that has CuPy but neither pycuda nor TensorRT (``scripts/gpu-check.sh``). Not used by the loop."""

    def __init__(self, spec, block=(16, 16)):
        import cupy
        if spec.resize != "stretch":
            raise DeviceError("CUDA preprocessing supports resize 'stretch' only")
        if spec.channels != 3:
            raise DeviceError("CUDA preprocessing writes 3 channels; this model takes {} ({})".format(
                spec.channels, spec.color))
        resize_taps(2, 1, spec.interpolation)  # refuses 'area' before compiling
        self.spec = spec
        self._cupy = cupy
        self._kernel = cupy.RawKernel(KERNEL_SOURCE, KERNEL_NAME)
        self._grid, self._block = launch_shape(spec, block)
        scale, offset = spec.affine()
        self._affine = [np.float32(v) for v in list(scale) + list(offset)]

    def __call__(self, frame_bgr):
        """One BGR uint8 frame -> float32 1 x 3 x h x w on the host, computed by the kernel."""
        cupy = self._cupy
        frame = _frame_bgr(frame_bgr)
        spec = self.spec
        taps = [cupy.asarray(t) for t in resize_taps(frame.shape[1], spec.width, spec.interpolation) +
                resize_taps(frame.shape[0], spec.height, spec.interpolation)]
        source = cupy.asarray(frame)
        output = cupy.empty((1, 3, spec.height, spec.width), dtype=cupy.float32)
        arguments = (source, np.int32(frame.shape[1]), np.int32(frame.shape[1] * 3)) + tuple(taps) + (
            output, np.int32(spec.height), np.int32(spec.width)) + tuple(self._affine) + (
            np.int32(1 if spec.color == "RGB" else 0),)
        self._kernel(self._grid, self._block, arguments)
        cupy.cuda.Stream.null.synchronize()
        return cupy.asnumpy(output)
