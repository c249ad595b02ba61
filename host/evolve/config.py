"""The evolution's configuration: defaults here, a TOML file over them, command-line flags over that."""
from __future__ import annotations

import json
import logging
import math
import re
import os
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from contract.files import atomic_write
from host.errors import HostError
from host.evolve.presets import PRESET_NAMES
from host.evolve.synthesis import STRENGTHS

log = logging.getLogger("squishednets.config")

BUDGETS = ("params", "macs", "latency")
RECOVERIES = ("standard", "patient")
PATIENT_MIXUP_ALPHA = 1.0  # mixup's Beta(1, 1) in the patient recovery

@dataclass
class EvolveConfig:
    """Every setting of a host-evolve run, with its default (the measured recipe, docs/benchmarks.md 1b and 7);
    units and meaning beside each field. Built by resolve (defaults < file < flags) and saved as RUN/config.json."""
    data: str = ""  # image-folder tree: DIR/<class>/*.jpg or DIR/train/<class> + DIR/val/<class>
    out: str = "runs/evolve"  # the run folder (RUN): lineage.sqlite, gen-XX/, summary.json, report.png
    generations: int = 15  # offspring generations after the ancestor (gen-00)
    preset: str = ""  # the preset the values below started from (host/evolve/presets.py: compact, tiny; "" = none)
    epochs: int = 4  # training epochs of every offspring (the measured recipe, docs/benchmarks.md section 7)
    ancestor_epochs: int = 6  # training epochs of the ancestor (SqueezeNet v1.1, conv10 -> N classes)
    image_size: int = 112  # square input side, pixels (the device resizes whole frames to it)
    env_factor: float = 0.93  # R: expected offspring cost = R x parent's (0.93 x 15 gens ~ the paper's 0.95 MB)
    budget: str = "params"  # what R budgets: "params" (size), "macs" (compute at image_size) or "latency" (a measured table's prediction)
    latency_table: str = "local"  # with budget "latency": a device-bench --layer-table file, or "local" (measured here, cached)
    allocation_exponent: float = 1.0  # with budget "latency": how strongly cuts follow latency price / sensitivity (0 = the heredity alone)
    cost_exponent: float = 0.0  # alpha of the compute-aware heredity (host/evolve/synthesis.py step 5); 0 = the paper's
    strength: str = "filter"  # a filter's strength: "filter" (sum |w| of its own weights, the paper's) or "consumer"
    offspring: int = 1  # K offspring per generation, each trained; the fittest (top-1) becomes the parent
    candidates: int = 1  # selection: draws per offspring (+ the most likely one) scored by fidelity to the parent, the best trained (1 = off)
    proxy_images: int = 512  # training images the selection proxy scores candidates on (fixed for the run)
    max_drop: float = 0.10  # an offspring more than this below its parent (or near chance) is not accepted; 1 = off
    max_total_drop: float = 0.05  # nor one more than this below the ancestor: redrawn at a milder R, then the run stops (1 = off)
    redraws: int = 2  # a collapsed generation is drawn again at a milder R this many times, then the run stops
    top1_tolerance: float = 0.02  # best_generation: the smallest within this of the ancestor's top-1
    min_filters: int = 4  # every layer keeps at least this many filters
    round_to: int = 16  # kept counts rounded up to a multiple of this (16: ONNX Runtime's NCHWc block with AVX-512, a multiple of its 8 with AVX2 and of TensorRT FP16's 8; contract/latency_table.channel_block; 1 = off)
    seed: int = 0  # one seed for the split, sampling, shuffling and augmentation
    batch_size: int = 64
    lr: float = 0.01  # peak SGD rate at batch 64, scaled linearly with the batch actually used (host/evolve/train.py)
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    crop_scale: float = 0.5  # smallest area share of the random resized crop (1.0 = flip only)
    distill_weight: float = 0.5  # >0: offspring also learn from a teacher's soft labels (T=2)
    distill_from: str = "ancestor"  # the teacher: "parent" or "ancestor" (the strongest model: drift cannot compound)
    final_epochs: int = 0  # >0: a recovery fine-tune of the last generation (LR rewound to the peak), one more generation
    recovery: str = "standard"  # the recovery's loss: "standard" (as every offspring's) or "patient" (KL to the ancestor alone, T=2, mixup: Beyer et al. 2022's function matching)
    val_fraction: float = 0.1  # held out per class when DIR has no val folder
    pretrained: str = ""  # torchvision-layout squeezenet1_1 state_dict for the ancestor ("" = from scratch)
    ancestor_from: str = ""  # a trained host-evolve model (RUN/gen-XX/offspring-K.pt) as the ancestor instead
    dropout: float = 0.5
    target_mb: float = 0.0  # >0: R per generation lands the last generation on this size (MB = 1e6 bytes)
    target_fps: float = 0.0  # >0: steer R by measured speed and stop when a generation reaches this fps
    target_speedup: float = 0.0  # >0 with budget "latency": R per generation lands the last on this predicted batch-1 speed-up over the ancestor
    latency_from: str = "local"  # where fps is measured: "local" (ONNX Runtime here) or "device:ID"
    env_floor: float = 0.5  # the harshest R the speed rule may choose
    steer: bool = True  # with target_fps: False keeps R fixed (measure and stop only; the baseline to compare)
    top1_floor: float = 0.0  # stop when a generation's top-1 falls below this (the best ones are kept)
    fps_weight: float = 0.0  # K > 1 with a target: fitness = top1 + fps_weight * min(1, fps / target) (local)
    latency_timeout: float = 900.0  # seconds to wait for a device's report of a generation
    latency_seconds: float = 2.0  # duration of each local speed measurement
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    fp16_onnx: bool = False  # also export gen-XX/model.fp16.onnx (TensorRT 11 builds FP16 only from such a file)
    cache_dir: str = ""  # decoded-image cache ("" = RUN/cache)

    def to_dict(self) -> dict:
        return asdict(self)


KNOWN_KEYS = tuple(f.name for f in fields(EvolveConfig))
# the settings that name files or folders: stored absolute, so a run means the same files from any directory
PATH_KEYS = ("data", "out", "pretrained", "ancestor_from", "cache_dir", "latency_table")
NOT_PATHS = {"latency_table": "local"}  # a path setting's value that names no file (nor does "device:ID")


def absolute_paths(values: dict) -> dict:
    """``values`` with every path setting (PATH_KEYS) that is a non-empty string made absolute against the
    current directory (``~`` expanded, ``..`` folded; symlinks kept as given)."""
    return {key: (os.path.abspath(os.path.expanduser(value)) if key in PATH_KEYS and isinstance(value, str) and value
                  and value != NOT_PATHS.get(key) and not (key == "latency_table" and value.startswith("device:"))
                  else value) for key, value in values.items()}


def run_paths(values: dict, run: str | Path) -> dict:
    """A run's saved settings as they apply to its folder ``run`` now: every path absolute (a relative one, as
    host-evolve stored them before issue 18, against the current directory, as then), ``out`` = ``run``, and
    paths inside the folder where the run was made (--demo's data) moved along with a moved run folder."""
    values = absolute_paths(values)
    old, new = values.get("out"), os.path.abspath(run)
    if isinstance(old, str) and old and old != new:
        for key in PATH_KEYS:
            value = values.get(key)
            if key != "out" and isinstance(value, str) and (value + os.sep).startswith(old.rstrip(os.sep) + os.sep):
                values[key] = os.path.normpath(os.path.join(new, os.path.relpath(value, old)))
    values["out"] = new
    return values


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies in it, symlinks resolved (neither needs to exist)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_keys(values: dict, source: str) -> None:
    """HostError naming ``source`` and listing every known key when ``values`` holds a key EvolveConfig lacks."""
    unknown = sorted(set(values) - set(KNOWN_KEYS))
    if unknown:
        raise HostError(f"{source}: unknown key(s) {', '.join(unknown)}. Known keys: {', '.join(KNOWN_KEYS)}")


def load_toml(path: str | Path) -> dict:
    """The values of a --config TOML file (top level or an ``[evolve]`` table), keys checked (check_keys).
    Raises HostError naming the file: missing, unreadable, not UTF-8, not valid TOML, or an unknown key."""
    path = Path(path)
    if not path.is_file():
        raise HostError(f"--config {path}: no such file")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise HostError(f"--config {path} is not UTF-8 text ({error.reason} at byte {error.start}); TOML files "
                        "are UTF-8: save it as UTF-8") from error
    except OSError as error:
        raise HostError(f"--config {path}: cannot read it ({error.strerror or error})") from error
    except tomllib.TOMLDecodeError as error:
        raise HostError(f"--config {path} is not valid TOML: {error}") from error
    values = values.get("evolve", values)  # a [evolve] table or top-level keys
    check_keys(values, f"--config {path}")
    return values


def resolve(file_values: dict, flag_values: dict) -> EvolveConfig:
    """Defaults < file < flags (flags given as None are 'not set'). Types are checked against the defaults;
    paths (PATH_KEYS) are made absolute against the current directory."""
    merged = EvolveConfig().to_dict()
    merged.update(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    check_keys(merged, "configuration")
    for field in fields(EvolveConfig):
        default, value = getattr(EvolveConfig, field.name), merged[field.name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            merged[field.name] = value = float(value)
        if type(value) is not type(default):
            raise HostError(f"config key {field.name} = {value!r} should be a {type(default).__name__} "
                            f"(default {default!r})")
    config = EvolveConfig(**absolute_paths(merged))
    validate(config)
    return config


MAX_IMAGE_SIZE = 1024  # the decoded cache holds images x size^2 x 3 bytes: 1024 px is 3 MB an image


def validate(config: EvolveConfig) -> None:
    """Every value in range, or one HostError listing all the problems, each with its value and the fix
    (non-finite floats first: a nan passes every comparison)."""
    problems = [f"{f.name} = {getattr(config, f.name)} must be a finite number" for f in fields(EvolveConfig)
                if isinstance(getattr(config, f.name), float) and not math.isfinite(getattr(config, f.name))]
    if problems:  # nan compares False with everything: the range checks below would let it through
        raise HostError("invalid configuration: " + "; ".join(problems))
    if config.generations < 0:
        problems.append(f"generations = {config.generations} must be >= 0")
    if config.epochs < 1 or config.ancestor_epochs < 0:
        problems.append(f"epochs = {config.epochs} must be >= 1 and ancestor_epochs >= 0")
    if not 0 < config.env_factor <= 1:
        problems.append(f"env_factor = {config.env_factor} must be in (0, 1] (the paper's R, e.g. 0.93)")
    if config.budget not in BUDGETS:
        problems.append(f"budget = {config.budget!r} must be one of {', '.join(BUDGETS)}")
    if not 0 <= config.allocation_exponent <= 4:
        problems.append(f"allocation_exponent = {config.allocation_exponent} must be in [0, 4] (0 = the heredity "
                        "alone; 1: a layer that buys twice the time per unit of damage is cut about twice as readily)")
    if config.budget == "latency" and config.cost_exponent:
        problems.append("cost_exponent is the MAC-priced heredity; with budget = 'latency' the allocation "
                        "(allocation_exponent) prices layers by the latency table: give one of them")
    if config.strength not in STRENGTHS:
        problems.append(f"strength = {config.strength!r} must be one of {', '.join(STRENGTHS)}")
    if not 0 <= config.cost_exponent <= 4:
        problems.append(f"cost_exponent = {config.cost_exponent} must be in [0, 4] (0 = the paper's heredity; "
                        "1 cuts a layer whose filters cost twice the mean about twice as readily)")
    if config.offspring < 1 or config.candidates < 1 or config.redraws < 0:
        problems.append(f"offspring = {config.offspring} and candidates = {config.candidates} must be >= 1, "
                        f"redraws = {config.redraws} >= 0")
    if config.proxy_images < 8:
        problems.append(f"proxy_images = {config.proxy_images} must be >= 8 (e.g. 512)")
    if not 0 < config.max_drop <= 1 or not 0 < config.max_total_drop <= 1 or not 0 <= config.top1_tolerance <= 1:
        problems.append(f"max_drop = {config.max_drop} and max_total_drop = {config.max_total_drop} must be in "
                        f"(0, 1] and top1_tolerance = "
                        f"{config.top1_tolerance} in [0, 1] (fractions: 0.02 = 2 points)")
    if config.preset and config.preset not in PRESET_NAMES:
        problems.append(f"preset = {config.preset!r} must be one of {', '.join(PRESET_NAMES)}")
    if not 32 <= config.image_size <= MAX_IMAGE_SIZE:
        problems.append(f"image_size = {config.image_size} must be in [32, {MAX_IMAGE_SIZE}] (SqueezeNet "
                        f"downsamples 16x; the decoded cache holds every image at this size)")
    if not 0 < config.lr <= 1000:
        problems.append(f"lr = {config.lr} must be in (0, 1000] (the peak learning rate at batch 64, e.g. 0.01)")
    if not 0 <= config.seed < 2 ** 32:
        problems.append(f"seed = {config.seed} must be in [0, 2^32) (numpy's and torch's seeds are unsigned)")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(config.device)):
        problems.append(f"device = {config.device!r} must be auto, cpu, cuda or cuda:N (torch's names)")
    if config.weight_decay < 0 or not 0 <= config.label_smoothing < 1 or not 0 <= config.dropout < 1:
        problems.append(f"weight_decay = {config.weight_decay} must be >= 0, label_smoothing = "
                        f"{config.label_smoothing} and dropout = {config.dropout} in [0, 1)")
    if not 0 <= config.top1_floor <= 1 or config.fps_weight < 0:
        problems.append(f"top1_floor = {config.top1_floor} must be in [0, 1] and fps_weight = {config.fps_weight} "
                        ">= 0")
    if config.latency_seconds <= 0 or config.latency_timeout <= 0:
        problems.append(f"latency_seconds = {config.latency_seconds} and latency_timeout = "
                        f"{config.latency_timeout} must be > 0")
    if config.batch_size < 2:
        problems.append(f"batch_size = {config.batch_size} must be >= 2")
    if config.round_to < 1 or config.min_filters < 1:
        problems.append("round_to and min_filters must be >= 1")
    if not 0 < config.crop_scale <= 1:
        problems.append(f"crop_scale = {config.crop_scale} must be in (0, 1]")
    if not 0 <= config.distill_weight <= 1:
        problems.append(f"distill_weight = {config.distill_weight} must be in [0, 1]")
    if config.distill_from not in ("parent", "ancestor"):
        problems.append(f"distill_from = {config.distill_from!r} must be 'parent' or 'ancestor'")
    if config.ancestor_from and config.pretrained:
        problems.append("give pretrained (SqueezeNet v1.1's ImageNet weights) or ancestor_from (a trained "
                        "host-evolve model), not both: ancestor_from's weights would replace pretrained's")
    if config.recovery not in RECOVERIES:
        problems.append(f"recovery = {config.recovery!r} must be one of {', '.join(RECOVERIES)}")
    if config.final_epochs < 0:
        problems.append(f"final_epochs = {config.final_epochs} must be >= 0 (0 = no recovery fine-tune)")
    if config.target_speedup < 0 or (config.target_speedup > 0 and config.budget != "latency"):
        problems.append(f"target_speedup = {config.target_speedup} needs budget = 'latency' (the speed-up is the "
                        "latency table's prediction) and must be >= 0 (0 = off)")
    if config.target_mb < 0:
        problems.append(f"target_mb = {config.target_mb} must be >= 0 (0 = off)")
    if config.target_fps < 0 or not 0 < config.env_floor <= config.env_factor:
        problems.append(f"target_fps = {config.target_fps} must be >= 0 and 0 < env_floor ({config.env_floor}) "
                        f"<= env_factor ({config.env_factor})")
    if not (config.latency_from == "local" or (config.latency_from.startswith("device:") and
                                                len(config.latency_from) > 7)):
        problems.append(f"latency_from = {config.latency_from!r} must be 'local' or 'device:ID'")
    if config.fps_weight > 0 and (config.target_fps <= 0 or config.latency_from != "local"):
        problems.append("fps_weight needs target_fps > 0 and latency_from = 'local' (offspring are measured here)")
    if problems:
        raise HostError("invalid configuration: " + "; ".join(problems))
    if config.data and config.out and inside(config.out, config.data):
        raise HostError(f"--out {config.out} is inside --data {config.data}: the run's files would become part of "
                        f"the dataset it trains on; give an --out outside {config.data}")


def save(config: EvolveConfig, path: Path) -> None:
    """``RUN/config.json``: every value, paths absolute (host/evolve/config.py resolve), written whole or not at all."""
    atomic_write(path, json.dumps(config.to_dict(), indent=2, sort_keys=True))


def load_saved(path: Path) -> EvolveConfig:
    """A run's config.json, checked as a new config is (keys, types, ranges)."""
    if not path.is_file():
        raise HostError(f"--resume {path.parent}: no config.json there; is it a run folder written by host-evolve?")
    fix = "restore it (lineage.sqlite keeps a copy in its config table) or start a new run with --out"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not UTF-8 or not JSON
        raise HostError(f"--resume {path.parent}: {path} is not readable JSON ({error}); {fix}") from error
    if not isinstance(values, dict):
        raise HostError(f"--resume {path.parent}: {path} is not a JSON object of settings; {fix}")
    relative = [f"{key} = {values[key]!r}" for key in PATH_KEYS if key != "out" and isinstance(values.get(key), str)
                and values[key] and values[key] != NOT_PATHS.get(key) and not values[key].startswith("device:")
                and not os.path.isabs(os.path.expanduser(values[key]))]
    if relative:  # a run made before paths were stored absolute: they meant the directory it was started in
        log.warning("%s holds relative paths (%s, from an older host-evolve); they are read against the current "
                    "directory %s and stored absolute from now on", path, ", ".join(relative), os.getcwd())
    try:
        return resolve(run_paths(values, path.parent), {})
    except HostError as error:
        raise HostError(f"--resume {path.parent}: {path}: {error}; {fix}") from error
