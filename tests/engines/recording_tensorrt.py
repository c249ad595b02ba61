"""Recording stand-ins for the ``tensorrt`` module (8.2, 10 and 11 shapes of its API). They are NOT TensorRT:
they build nothing and run nothing; they record which calls the code makes, in order, so the version path
choice and the builder sequence can be checked on a machine without TensorRT."""
import types

import numpy as np


class RecordingLog(list):
    def names(self):
        return [entry[0] for entry in self]


def recording_tensorrt(version="8.2.1.8", parse_ok=True, build_ok=True, fast_fp16=True, fast_int8=False,
                       timing_cache="ok"):
    """A module-like object whose classes append ``(call, args)`` to ``.calls``.

    ``timing_cache``: "ok"; "mismatch" (``set_timing_cache`` returns False for a non-empty cache, as TensorRT
    does for one made by another version or GPU); "none" (``get_timing_cache`` returns None after the build);
    "serialize-fails" (its ``serialize`` raises)."""
    calls = RecordingLog()
    major = int(version.split(".")[0])
    trt = types.SimpleNamespace(__version__=version, calls=calls)

    class RecordingLogger(object):
        WARNING = "WARNING"

        def __init__(self, level):
            calls.append(("Logger", level))
    trt.Logger = RecordingLogger

    flag_names = {"EXPLICIT_BATCH": 0} if major < 11 else {}
    if major >= 10:
        flag_names["STRONGLY_TYPED"] = 1
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flag_names)
    if major < 11:
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")
    else:
        trt.BuilderFlag = types.SimpleNamespace(DEBUG="DEBUG", TF32="TF32")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    # TensorRT 8.2's TacticSource: CUBLAS 0, CUBLAS_LT 1, CUDNN 2; 8.5 added EDGE_MASK_CONVOLUTIONS 3
    sources = {"CUBLAS": 0, "CUBLAS_LT": 1, "CUDNN": 2}
    if version.split(".")[:2] >= ["8", "5"] or major >= 10:
        sources["EDGE_MASK_CONVOLUTIONS"] = 3
    trt.TacticSource = types.SimpleNamespace(**sources)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.nptype = lambda dtype: {"float32": np.float32, "float16": np.float16}[dtype]

    class RecordingParserError(object):
        def __init__(self, index):
            self.index = index

        def __str__(self):
            return "In node {} (importConv): UNSUPPORTED_NODE: full description {}".format(self.index, self.index)

        def node(self):
            return self.index

        def code(self):
            return "UNSUPPORTED_NODE"

        def desc(self):
            return "description {}".format(self.index)

    class RecordingOnnxParser(object):
        def __init__(self, network, logger):
            calls.append(("OnnxParser", None))
            self.num_errors = 0

        def parse(self, data):
            calls.append(("parse", len(data)))
            if not parse_ok:
                self.num_errors = 2
            return parse_ok

        def get_error(self, index):
            return RecordingParserError(index)
    trt.OnnxParser = RecordingOnnxParser

    class RecordingProfile(object):
        def set_shape(self, name, low, opt, high):
            calls.append(("profile.set_shape", (name, tuple(low), tuple(opt), tuple(high))))

    class RecordingTimingCache(object):
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            if timing_cache == "serialize-fails":
                raise RuntimeError("recording: serialize failed")
            return self.data + b"+timings"

    class RecordingConfig(object):
        def __init__(self):
            self.flags = []
            self._timing = None
            self._tactics = sum(1 << v for v in vars(trt.TacticSource).values())  # every source on, as TensorRT

        def set_flag(self, flag):
            calls.append(("config.set_flag", flag))
            self.flags.append(flag)

        def clear_flag(self, flag):
            calls.append(("config.clear_flag", flag))

        def get_tactic_sources(self):
            return self._tactics

        def set_tactic_sources(self, mask):
            calls.append(("config.set_tactic_sources", mask))
            self._tactics = mask

        def add_optimization_profile(self, profile):
            calls.append(("config.add_optimization_profile", None))

        def create_timing_cache(self, data):
            calls.append(("config.create_timing_cache", bytes(data)))
            return RecordingTimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("config.set_timing_cache", ignore_mismatch))
            if timing_cache == "mismatch" and cache.data:
                return False
            self._timing = cache
            return True

        def get_timing_cache(self):
            return None if timing_cache == "none" else self._timing

        def __setattr__(self, name, value):
            if not name.startswith("_") and name != "flags":
                calls.append(("config." + name, value))
            object.__setattr__(self, name, value)

    if major >= 10 or version >= "8.4":
        def set_memory_pool_limit(self, pool, size):
            calls.append(("config.set_memory_pool_limit", (pool, size)))
        RecordingConfig.set_memory_pool_limit = set_memory_pool_limit
    if major < 10:
        def set_calibration_profile(self, profile):
            calls.append(("config.set_calibration_profile", None))
        RecordingConfig.set_calibration_profile = set_calibration_profile

    class RecordingBuilder(object):
        def __init__(self, logger):
            calls.append(("Builder", None))
            if major < 11:
                self.platform_has_fast_fp16 = fast_fp16
                self.platform_has_fast_int8 = fast_int8

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return object()

        def create_builder_config(self):
            calls.append(("create_builder_config", None))
            return RecordingConfig()

        def create_optimization_profile(self):
            return RecordingProfile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network", None))
            return b"RECORDING-ENGINE-" + version.encode() if build_ok else None
    trt.Builder = RecordingBuilder

    class RecordingCalibratorBase(object):
        def __init__(self):
            calls.append(("IInt8EntropyCalibrator2.__init__", None))
    if major < 11:
        trt.IInt8EntropyCalibrator2 = RecordingCalibratorBase
    return trt


class RecordingContext82(object):
    """An 8.2-shaped execution context: bindings and execute_async_v2 only."""

    def __init__(self, calls):
        self.calls = calls
        self.shapes = {}

    def set_binding_shape(self, index, shape):
        self.calls.append(("set_binding_shape", (index, shape)))
        self.shapes[index] = shape
        return True

    def get_binding_shape(self, index):
        return (self.shapes.get(0, (1,))[0], 3) if index == 1 else self.shapes[index]

    def execute_async_v2(self, bindings, stream_handle):
        self.calls.append(("execute_async_v2", (tuple(bindings), stream_handle)))
        return True


class RecordingEngine82(object):
    num_bindings = 2

    def get_binding_name(self, index):
        return ["input_0", "output_0"][index]

    def binding_is_input(self, index):
        return index == 0

    def get_binding_dtype(self, index):
        return "float32"

    def get_binding_shape(self, index):
        return [(-1, 3, 32, 32), (-1, 3)][index]

    def get_binding_index(self, name):
        return ["input_0", "output_0"].index(name)

    def get_profile_shape(self, profile, index):
        return [(1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32)]


class RecordingContext10(object):
    """A 10-shaped execution context: tensor names, set_tensor_address, execute_async_v3."""

    def __init__(self, calls):
        self.calls = calls
        self.shapes = {}

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", (name, shape)))
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        return (self.shapes["input_0"][0], 3) if name == "output_0" else self.shapes[name]

    def set_tensor_address(self, name, pointer):
        self.calls.append(("set_tensor_address", (name, pointer)))

    def execute_async_v3(self, stream_handle):
        self.calls.append(("execute_async_v3", stream_handle))
        return True

    def execute_async_v2(self, bindings, stream_handle):  # 8.5 still has both; v3 must win
        raise AssertionError("execute_async_v2 must not be used when execute_async_v3 exists")


class RecordingEngine10(object):
    num_io_tensors = 2

    def get_tensor_name(self, index):
        return ["input_0", "output_0"][index]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input_0" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_shape(self, name):
        return (-1, 3, 32, 32) if name == "input_0" else (-1, 3)

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32)]
