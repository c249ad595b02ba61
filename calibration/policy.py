"""Where INT8 is offered: only on GPUs with fast INT8 (dp4a / tensor cores). TX1 (sm_53) has none, nor do
sm_60 (P100) and sm_62 (TX2): there FP16 is the fast path, and INT8 would be emulated, slower than FP16."""
from contract.errors import DeviceError

_NO_FAST_INT8 = {(6, 0), (6, 2)}


def int8_supported(capability, platform_has_fast_int8=None):
    """(ok, reason). TensorRT's own ``platform_has_fast_int8`` wins where it exists (it is gone in 11)."""
    capability = (int(capability[0]), int(capability[1]))
    text = "sm_{}{}".format(*capability)
    if platform_has_fast_int8 is not None:
        return bool(platform_has_fast_int8), "TensorRT reports platform_has_fast_int8={} on {}".format(
            bool(platform_has_fast_int8), text)
    if capability < (6, 1) or capability in _NO_FAST_INT8:
        return False, "{} has no fast INT8 (needs sm_61 or sm_70+)".format(text)
    return True, "{} has fast INT8".format(text)


def require_int8(gpu, platform_has_fast_int8=None):
    """Raise DeviceError (suggesting FP16) when ``gpu`` (engines.gpu.GpuInfo) has no fast INT8."""
    ok, reason = int8_supported(gpu.capability, platform_has_fast_int8)
    if not ok:
        raise DeviceError("INT8 is refused on {} ({}): {}. Use --precision fp16 instead; on Maxwell (TX1) FP16 "
                          "runs at twice the FP32 rate with no calibration".format(gpu.name, gpu.capability_text,
                                                                                    reason))
    return reason
