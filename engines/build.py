"""ONNX -> serialized TensorRT engine (``engine_from_onnx``), and the cached form every caller uses
(``cached_engine_from_onnx``): explicit batch, a small workspace that a 4 GB Jetson survives, FP32/FP16/INT8,
one optimisation profile (min/opt/max batch) and a timing cache on disk.

Both take the ``tensorrt`` module as an argument (imported lazily by the caller), which is also how the
tests drive the exact call sequence with a recording stand-in.
"""
import os
import time

from engines import tensorrt_api as api
from contract.files import atomic_write
from contract.precisions import INT8_NEEDS_CALIBRATION, check_precision
from engines.cache import CacheEntry, EngineKey
from engines.errors import EngineError

DEFAULT_WORKSPACE_MB = 256  # TX1: 4 GB shared by CPU and GPU; bigger builds get killed for memory


TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")


def parse_tactic_sources(text):
    """trtexec's ``--tacticSources`` form, e.g. "-CUDNN,-CUBLAS,-CUBLAS_LT": [(source, enabled)], checked. None
    or "" for TensorRT's default. EngineError naming the bad item and the known sources."""
    if not text:
        return []
    changes = []
    for item in str(text).split(","):
        item = item.strip()
        sign, name = (item[0], item[1:].upper()) if item[:1] in "+-" else ("", item.upper())
        if sign == "" or name not in TACTIC_SOURCES:
            raise EngineError("--tactic-sources {!r}: each item is +SOURCE or -SOURCE with SOURCE one of {} (as "
                              "trtexec's --tacticSources; e.g. -CUDNN,-CUBLAS,-CUBLAS_LT saves hundreds of MB "
                              "on a 4 GB board)".format(text, ", ".join(TACTIC_SOURCES)))
        changes.append((name, sign == "+"))
    return changes


def tactic_mask(trt, default_mask, changes):
    """``default_mask`` (config.get_tactic_sources()) with ``changes`` applied; a source this TensorRT does not
    have (EDGE_MASK_CONVOLUTIONS before 8.5) is an EngineError naming the version."""
    mask = int(default_mask)
    for name, enabled in changes:
        source = getattr(getattr(trt, "TacticSource", None), name, None)
        if source is None:
            raise EngineError("--tactic-sources: TensorRT {} has no tactic source {}".format(api.version_of(trt), name))
        bit = 1 << int(source)
        mask = (mask | bit) if enabled else (mask & ~bit)
    return mask


class BuildSettings(object):
    """What to build: ``precision`` (fp32|fp16|int8), batch profile ``min_batch <= opt_batch <= max_batch``,
    ``workspace_mb`` (builder scratch memory), ``tactic_sources`` (trtexec's --tacticSources form, or None)."""

    def __init__(self, precision="fp32", min_batch=1, opt_batch=None, max_batch=8,
                 workspace_mb=DEFAULT_WORKSPACE_MB, tactic_sources=None):
        check_precision(precision, error=EngineError)
        self.tactic_changes = parse_tactic_sources(tactic_sources)
        self.tactic_sources = ",".join("{}{}".format("+" if on else "-", name) for name, on in self.tactic_changes)
        opt_batch = max_batch if opt_batch is None else opt_batch
        if not 1 <= int(min_batch) <= int(opt_batch) <= int(max_batch):
            raise EngineError("batch profile min {} / opt {} / max {} must satisfy 1 <= min <= opt <= max".format(
                min_batch, opt_batch, max_batch))
        if int(workspace_mb) < 16:
            raise EngineError("workspace {} MB is too small for any useful tactic: use 64 MB or more".format(
                workspace_mb))
        self.precision = precision
        self.min_batch, self.opt_batch, self.max_batch = int(min_batch), int(opt_batch), int(max_batch)
        self.workspace_mb = int(workspace_mb)

    @property
    def batch_profile(self):
        return (self.min_batch, self.opt_batch, self.max_batch)

    def to_dict(self):
        return {"precision": self.precision, "batch_profile": list(self.batch_profile),
                "workspace_mb": self.workspace_mb, "tactic_sources": self.tactic_sources}


def precision_plan(trt, builder, precision, onnx_dtype, quantized=False):
    """How to get ``precision`` from this TensorRT: a dict with ``flags`` (BuilderFlag names to set),
    ``strongly_typed`` and ``notes``; EngineError where it cannot be had, saying what to do instead.
    ``quantized``: the ONNX is explicitly quantized (Q/DQ nodes, contract.model_info ModelInfo.quantized): its
    own scales make it INT8 (TensorRT developer guide, "Explicit Quantization"): the INT8 flag without a
    calibrator on TensorRT 8-10, strongly typed where the flags are gone (11+), whatever ``precision`` asked."""
    plan = {"flags": [], "clear_flags": [], "strongly_typed": False, "notes": []}
    flags_exist = api.has_precision_flags(trt)
    if quantized:
        if not flags_exist:
            plan["strongly_typed"] = True
        else:
            plan["flags"] += ["FP16", "INT8"] if precision == "fp16" else ["INT8"]
        plan["notes"].append("Q/DQ ONNX: INT8 from its own quantization scales, no calibration set")
        return plan
    if onnx_dtype == "float16":
        # An FP16 ONNX (host export with fp16) carries its own types: build it strongly typed.
        if precision == "int8":
            raise EngineError("this ONNX is FP16; INT8 needs the FP32 ONNX (and a calibration set)")
        plan["strongly_typed"] = True
        plan["notes"].append("FP16 ONNX built strongly typed: its types decide each layer's precision")
        return plan
    if precision == "fp32" and api.has_builder_flag(trt, "TF32"):
        # TensorRT enables TF32 by default: on Ampere and newer an "fp32" engine would run its convolutions
        # with 10-bit mantissas. fp32 means fp32 on every TensorRT that has the flag, 11 included (TX1 has no
        # TF32; clearing the flag there changes nothing).
        plan["clear_flags"].append("TF32")
    if not flags_exist:  # TensorRT 11+: no FP16/INT8 builder flags, no implicit calibration
        if precision == "fp16":
            raise EngineError("TensorRT {} has no FP16 builder flag: precision comes from the ONNX itself. Export "
                              "an FP16 ONNX on the host and give that model, or run --precision fp32".format(
                                  api.version_of(trt)))
        if precision == "int8":
            raise EngineError("TensorRT {} removed implicit INT8 calibration: INT8 needs an ONNX with "
                              "Q/DQ (quantize/dequantize) nodes made by a quantization tool (e.g. NVIDIA "
                              "ModelOpt); use --precision fp32 or an FP16 ONNX here".format(api.version_of(trt)))
        return plan
    if precision in ("fp16", "int8"):
        fast = api.platform_flag(builder, "platform_has_fast_fp16")
        if fast is False:
            plan["notes"].append("this GPU has no fast FP16: FP16 layers may be no faster than FP32")
        plan["flags"].append("FP16")  # with INT8: layers that cannot run INT8 fall back to FP16, not FP32
    if precision == "int8":
        # Which GPUs get INT8 at all is calibration/policy.py's rule, applied once by the caller before any
        # calibration work; here only TensorRT's own word on this GPU counts.
        if api.platform_flag(builder, "platform_has_fast_int8") is False:
            raise EngineError("INT8 is refused: TensorRT reports no fast INT8 on this GPU; use --precision fp16")
        plan["flags"].append("INT8")
    return plan


def engine_from_onnx(trt, onnx_path, info, settings, timing_cache_path=None, calibrator=None,
                     log=print, store=None):
    """Build and return the serialized engine (bytes) for ``onnx_path`` (``info``: its ModelInfo).

    The sequence: Builder -> network (explicit batch) -> OnnxParser.parse -> builder config (workspace,
    precision, optimisation profile, timing cache, calibrator) -> build_serialized_network -> ``store(engine)``
    -> save the timing cache. The engine is stored before the timing cache is touched, and a timing cache
    that cannot be read, set or saved is only a warning: minutes of build are never lost to an optimisation.
    Parser errors are reported in full.
    """
    logger = api.shared_logger(trt)
    builder = trt.Builder(logger)
    plan = precision_plan(trt, builder, settings.precision, info.input_dtype, getattr(info, "quantized", False))
    network = builder.create_network(api.network_creation_flags(trt, plan["strongly_typed"]))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        data = handle.read()
    if not parser.parse(data):
        errors = api.parser_errors(parser)
        raise EngineError("TensorRT {}'s ONNX parser rejected {} with {} error(s):\n  {}\nThe device side needs "
                          "opset <= 13 for TensorRT 8.2 (this file: {}); re-export with host-evolve".format(
                              api.version_of(trt), onnx_path, len(errors), "\n  ".join(errors) or "(no details)",
                              info.opsets))
    config = builder.create_builder_config()
    workspace_call = api.set_workspace(trt, config, settings.workspace_mb << 20)
    for flag in plan["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in plan["clear_flags"]:
        config.clear_flag(getattr(trt.BuilderFlag, flag))
    if settings.tactic_changes:  # cuDNN/cuBLAS off: their workspace and libraries cost memory a 4 GB board lacks
        if not hasattr(config, "set_tactic_sources"):
            raise EngineError("--tactic-sources: TensorRT {} cannot choose tactic sources".format(api.version_of(trt)))
        config.set_tactic_sources(tactic_mask(trt, config.get_tactic_sources(), settings.tactic_changes))
    channels, height, width = info.input_shape[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(info.input_name, (settings.min_batch, channels, height, width),
                      (settings.opt_batch, channels, height, width), (settings.max_batch, channels, height, width))
    config.add_optimization_profile(profile)
    if "INT8" in plan["flags"] and not getattr(info, "quantized", False):  # Q/DQ: its scales, no calibrator
        if calibrator is None:
            raise EngineError(INT8_NEEDS_CALIBRATION)
        config.int8_calibrator = calibrator
        if hasattr(config, "set_calibration_profile"):  # dynamic shapes: calibrate at the profile's opt shape
            config.set_calibration_profile(profile)
    timing_cache = None
    if timing_cache_path is not None and hasattr(config, "create_timing_cache"):
        timing_cache = attach_timing_cache(config, timing_cache_path, log)
    for note in plan["notes"]:
        log("engine: " + note)
    log("engine: building {} {} (batch {}/{}/{}, workspace {} MB via {}) with TensorRT {}; this takes minutes "
        "on a Jetson".format(os.path.basename(onnx_path), settings.precision, settings.min_batch,
                             settings.opt_batch, settings.max_batch, settings.workspace_mb, workspace_call,
                             api.version_of(trt)))
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and getattr(calibrator, "error", None) is not None:
        raise calibrator.error  # what the calibration set lacked, not TensorRT's "could not build"
    if serialized is None:
        raise EngineError("TensorRT {} could not build an engine for {} at {} (see its log above); if the "
                          "process ran out of memory, lower --workspace-mb (or device-bench's largest --batch)".format(
                              api.version_of(trt), onnx_path, settings.precision))
    engine = bytes(serialized)
    if store is not None:
        store(engine)
    if timing_cache is not None:
        save_timing_cache(config, timing_cache_path, log)
    return engine


def attach_timing_cache(config, path, log=print):
    """Give the builder the timing cache at ``path`` (or a fresh one); return it, or None without one.

    ``set_timing_cache(cache, ignore_mismatch=False)`` returns False for a cache made by another TensorRT or
    GPU: then a fresh cache is used, so the build still runs and the file is replaced after it.
    """
    old = b""
    try:
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                old = handle.read()
    except (IOError, OSError) as error:
        log("engine: warning: timing cache {} unreadable ({}); starting a fresh one".format(path, error))
    cache = None
    if old:
        try:  # TensorRT may raise on a corrupt blob instead of refusing it: either way a fresh cache follows
            cache = config.create_timing_cache(old)
        except Exception as error:
            log("engine: warning: timing cache {} is unusable ({})".format(path, error))
    if cache is not None and config.set_timing_cache(cache, False) is not False:
        return cache
    if old:
        log("engine: timing cache {} was refused (made by another TensorRT or GPU); starting a fresh one".format(
            path))
    cache = config.create_timing_cache(b"")
    if cache is None or config.set_timing_cache(cache, False) is False:
        log("engine: warning: TensorRT refused even a fresh timing cache; building without one")
        return None
    return cache


def save_timing_cache(config, path, log=print):
    """Write the builder's timing cache to ``path``; True when saved. Failing is a warning, never an error:
    the engine is already stored, and the next build only takes longer."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            log("engine: warning: TensorRT returned no timing cache; {} not updated".format(path))
            return False
        atomic_write(path, bytes(cache.serialize()))
        return True
    except Exception as error:  # any failure here (TensorRT or the disk) must not cost the finished engine
        log("engine: warning: timing cache not saved to {} ({}); the next build only takes longer".format(
            path, error))
        return False


def cached_engine_from_onnx(trt, info, settings, gpu, cache_dir, calibrator_factory=None, log=print):
    """Return (CacheEntry, engine bytes, sidecar dict, built: bool) for ``info`` (a ModelInfo).

    Loads the cached engine when its sidecar proves it is the one asked for; otherwise builds it (with the
    timing cache kept beside the engines) and stores it atomically. ``calibrator_factory()`` (no arguments;
    it knows its model and cache folder) returns (calibrator, signature) for INT8 builds (calibration/ makes
    both; engines/ never imports it).
    """
    trt_version = api.version_of(trt)
    calibration = None
    calibrator = None
    if settings.precision == "int8" and api.has_precision_flags(trt) and not getattr(info, "quantized", False):
        if calibrator_factory is None:
            raise EngineError(INT8_NEEDS_CALIBRATION)
        calibrator, calibration = calibrator_factory()
    key = EngineKey(info.sha256, trt_version, gpu.name, gpu.capability_text, settings.precision,
                    settings.batch_profile, calibration, getattr(gpu, "multiprocessors", 0),
                    {k: v for k, v in settings.to_dict().items() if k not in ("precision", "batch_profile")})
    folder = os.path.join(cache_dir, "engines")
    entry = CacheEntry(folder, key)
    engine, sidecar, reason = entry.load()
    if reason is None:
        log("engine: cached {}".format(entry.engine_path))
        return entry, engine, sidecar, False
    with entry.build_lock(log):  # one builder per key; a second process waits, then loads what the first stored
        engine, sidecar, reason_now = entry.load()
        if reason_now is None:
            log("engine: cached {} (built by another process meanwhile)".format(entry.engine_path))
            return entry, engine, sidecar, False
        log("engine: building, because {}".format(reason_now))
        timing_cache_path = os.path.join(folder, "timing-trt{}-{}.cache".format(trt_version, gpu.slug()))
        started = time.time()
        stored = []

        def store(engine_bytes):  # before the timing cache is saved: a failing cache never costs the engine
            stored.append(entry.store(engine_bytes, {"build_seconds": round(time.time() - started, 2),
                                                     "onnx_path": info.path, "settings": settings.to_dict(),
                                                     "gpu": gpu.to_dict()}))
        engine = engine_from_onnx(trt, info.path, info, settings, timing_cache_path, calibrator, log=log, store=store)
        sidecar = stored[0]
    log("engine: stored {} ({:.1f} MB, {:.1f} s)".format(entry.engine_path, len(engine) / 1e6,
                                                          sidecar["build_seconds"]))
    return entry, engine, sidecar, True


def load_engine(trt, runtime, info, settings, gpu, cache_dir, calibrator_factory=None, log=print):
    """A ready ``ICudaEngine`` for ``info`` (the loader half of Polygraphy's loader/runner split): the cached
    engine (or a fresh build, :func:`cached_engine_from_onnx`) deserialized by ``runtime``. When TensorRT will
    not take a cached engine its sidecar vouched for (the driver or the library changed underneath), the entry
    is dropped and built once more. Returns (engine, CacheEntry, sidecar dict, built: bool); EngineError when
    even a fresh engine does not deserialize. Call it on the thread that holds the CUDA context."""
    entry, data, sidecar, built = cached_engine_from_onnx(trt, info, settings, gpu, cache_dir, calibrator_factory,
                                                          log)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None and not built:
        log("engine: TensorRT could not deserialize {}; rebuilding it".format(entry.engine_path))
        entry.invalidate()
        entry, data, sidecar, built = cached_engine_from_onnx(trt, info, settings, gpu, cache_dir,
                                                              calibrator_factory, log)
        engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineError("TensorRT {} cannot deserialize the engine it just built ({}); see its log".format(
            api.version_of(trt), entry.engine_path))
    return engine, entry, sidecar, built
