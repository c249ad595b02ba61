"""``host-evolve``: argument parsing, then one call into host.evolve.evolution."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from contract.errors import ContractError
from contract.version import add_version
from contract.generation_files import FP16_ONNX, OFFSPRING_WEIGHTS
from host.evolve import config as config_module
from host.errors import HostError
from host.evolve.presets import PRESET_NAMES
from host.evolve.synthesis import STRENGTHS
from host.evolve.run_folder import RESUMABLE_KEYS, os_failure, write_failure


class Stopped(KeyboardInterrupt):
    """SIGTERM (kill, systemd, docker stop), raised where the evolution is, as Ctrl-C's KeyboardInterrupt is: the
    file being written is dropped whole, the lock released; ``--resume`` continues at the last finished epoch."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="host-evolve",
        description="Breed ever smaller SqueezeNet v1.1 descendants by deep evolutionary synthesis and export "
                    "every generation to ONNX.")
    add_version(parser, "host-evolve")
    parser.add_argument("--preset", choices=PRESET_NAMES,
                        help="a measured recipe (host/evolve/presets.py): compact <= 0.95 MB, tiny <= 0.49 MB, both at "
                             "112 px on MACs with distillation from the ancestor; a --config file and flags win over it")
    parser.add_argument("--data", help="image-folder tree: DIR/<class>/*.jpg or DIR/train|val/<class>")
    parser.add_argument("--out", help="run folder (default runs/evolve, runs/demo with --demo)")
    parser.add_argument("--generations", type=int, help="offspring generations after the ancestor (default 15)")
    parser.add_argument("--epochs", type=int, help="training epochs per offspring (default 4)")
    parser.add_argument("--ancestor-epochs", type=int, help="training epochs of the ancestor (default 6)")
    parser.add_argument("--image-size", type=int, help="square input size in pixels (default 112)")
    parser.add_argument("--env-factor", type=float, help="R: expected offspring cost / parent's (default 0.93)")
    parser.add_argument("--budget", choices=config_module.BUDGETS,
                        help="what R budgets: params (size, the default), macs, or latency (predicted by a measured "
                             "per-layer table: cuts land where the device spends its time)")
    parser.add_argument("--latency-table", metavar="FILE|local|device:ID",
                        help="with --budget latency: a table from `device-bench --layer-table` on the target; local "
                             "(ONNX Runtime here, measured once and cached; the default); or device:ID (asked of a "
                             "device-agent --follow through host-serve, read before generation 1)")
    parser.add_argument("--allocation-exponent", type=float,
                        help="with --budget latency: how strongly each layer's cut follows its latency price over its "
                             "accuracy price (default 1; 0 = the heredity alone)")
    parser.add_argument("--cost-exponent", type=float,
                        help="compute-aware heredity: filters that cost more MACs die more readily, whatever --budget counts "
                             "(0 = the paper's model, the default; e.g. 1)")
    parser.add_argument("--strength", choices=STRENGTHS,
                        help="a filter's strength in the heredity model: 'filter' sums its own weights (the paper's, "
                             "the default); 'consumer' sums the weights that read it downstream, which keeps more of "
                             "the parent right after the cut (docs/benchmarks.md section 9f)")
    parser.add_argument("--offspring", type=int, help="K offspring per generation, the fittest kept (default 1)")
    parser.add_argument("--candidates", type=int,
                        help="selection: draws per offspring scored by fidelity to the parent, the best trained "
                             "(default 1: off)")
    parser.add_argument("--max-drop", type=float,
                        help="an offspring this far below its parent (fraction) or near chance is redrawn, then "
                             "the run stops (default 0.10)")
    parser.add_argument("--max-total-drop", type=float,
                        help="nor one more than this fraction below the ancestor: redrawn at a milder R, then the run stops "
             "(default 0.05; --max-drop 1 turns both checks off)")
    parser.add_argument("--redraws", type=int, help="redraws of a collapsed generation at a milder R (default 2)")
    parser.add_argument("--top1-tolerance", type=float,
                        help="best_generation: the smallest within this fraction of the ancestor's top-1 "
                             "(default 0.02 = 2 points)")
    parser.add_argument("--round-to", type=int, help="round kept filter counts up to a multiple (default 16)")
    parser.add_argument("--min-filters", type=int, help="filters every layer keeps at least (default 4)")
    parser.add_argument("--distill-weight", type=float, help="weight of distillation from the teacher (default 0.5)")
    parser.add_argument("--distill-from", choices=("parent", "ancestor"),
                        help="the distillation teacher: the ancestor (default), the strongest model, or the parent")
    parser.add_argument("--final-epochs", type=int,
                        help="recovery fine-tune of the last generation, LR rewound to the peak (default 0: none)")
    parser.add_argument("--recovery", choices=config_module.RECOVERIES,
                        help="the recovery fine-tune's loss: standard (as every offspring's, the default) or patient "
                             "(function matching: KL to the ancestor alone, with mixup, the same view for both)")
    parser.add_argument("--crop-scale", type=float, help="smallest area share of the random crop (default 0.5)")
    parser.add_argument("--val-fraction", type=float, help="held out per class without a val folder (default 0.1)")
    parser.add_argument("--seed", type=int, help="seed of split, sampling and training (default 0)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 64)")
    parser.add_argument("--lr", type=float, help="peak learning rate at batch 64, scaled with the batch (default 0.01); "
                             "may change on --resume to rescue a run that diverged")
    parser.add_argument("--target-mb", type=float,
                        help="budget by size: choose R each generation so the last lands on this many MB")
    parser.add_argument("--target-speedup", type=float,
                        help="with --budget latency: choose R each generation so the last lands on this predicted "
                             "batch-1 speed-up over the ancestor (with --target-mb: the harsher R; stops when both "
                             "are met)")
    parser.add_argument("--target-fps", type=float,
                        help="steer R by measured fps and stop when a generation reaches this (default off)")
    parser.add_argument("--latency-from", help="local (ONNX Runtime here) or device:ID (a device-agent's reports; "
                                               "default local)")
    parser.add_argument("--fixed-env", dest="steer", action="store_false", default=None,
                        help="with --target-fps: keep R fixed, only measure and stop (a baseline for steering)")
    parser.add_argument("--env-floor", type=float, help="harshest R the speed rule may choose (default 0.5)")
    parser.add_argument("--top1-floor", type=float, help="stop when top-1 falls below this fraction (default off)")
    parser.add_argument("--fps-weight", type=float, help="K > 1: weight of measured speed in fitness (default 0)")
    parser.add_argument("--fp16-onnx", action="store_true", default=None,
                        help=f"also export {FP16_ONNX} per generation (for TensorRT 11, which has no FP16 flag)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--config", help="TOML file of settings; flags win over it")
    parser.add_argument("--pretrained", help="torchvision-layout squeezenet1_1 state_dict for the ancestor")
    parser.add_argument("--ancestor-from", metavar="WEIGHTS",
                        help=f"start from a trained host-evolve model (RUN/gen-XX/{OFFSPRING_WEIGHTS.format('K')}) instead of "
                             "SqueezeNet v1.1; it trains --ancestor-epochs more (0: evaluated as it is)")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in RUN where it stopped")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they are drawn only on a terminal anyway; the log lines stay)")
    parser.add_argument("--demo", action="store_true",
                        help="evolve on a built-in generated dataset (no data, no network, minutes on a CPU)")
    return parser


FLAG_KEYS = ("data", "out", "generations", "epochs", "ancestor_epochs", "image_size", "env_factor", "budget", "latency_table", "allocation_exponent", "cost_exponent", "strength",
             "offspring", "candidates", "max_drop", "max_total_drop", "redraws", "top1_tolerance", "round_to", "min_filters", "distill_weight", "distill_from", "final_epochs", "recovery", "crop_scale", "val_fraction", "target_mb", "target_speedup", "target_fps", "latency_from", "env_floor", "top1_floor", "fps_weight", "fp16_onnx", "steer", "seed", "batch_size", "lr", "device",
             "pretrained", "ancestor_from")


def resolve_config(args: argparse.Namespace) -> config_module.EvolveConfig:
    """The run's configuration from the parsed flags: defaults < preset < --config file < flags, or, with
    --resume, the run's own config.json with the few keys that may change. Raises HostError (one line, the fix
    named) for a change --resume does not allow, --preset/--config with --resume, a resumed run whose data
    folder is gone, and no data."""
    flags = {key: getattr(args, key) for key in FLAG_KEYS}
    if args.resume:
        saved = config_module.load_saved(Path(args.resume) / "config.json").to_dict()
        overrides = {k: v for k, v in flags.items() if v is not None and k not in ("out",)}
        if overrides.keys() - set(RESUMABLE_KEYS):
            allowed = ", ".join("--fixed-env" if k == "steer" else "--" + k.replace("_", "-") for k in RESUMABLE_KEYS)
            raise HostError(f"--resume {args.resume}: only {allowed} may change on resume; "
                            f"got {', '.join(sorted(overrides))}")
        if args.preset or args.config:
            raise HostError(f"--resume {args.resume}: a resumed run keeps its own settings; --preset and --config "
                            "start a new run (--out)")
        config = config_module.resolve(saved, dict(overrides, out=args.resume))
        if not Path(config.data).is_dir():  # stored absolute: the run's own data, wherever --resume is run from
            raise HostError(f"--resume {args.resume}: the run's data folder {config.data} is not there any more; "
                            "put it back, or if it moved, set \"data\" in "
                            f"{Path(args.resume) / 'config.json'} to its new place (its classes and files are "
                            "checked against the run's)")
        return config
    file_values = config_module.load_toml(args.config) if args.config else {}
    preset = args.preset or file_values.get("preset")  # `preset = "tiny"` in a --config file expands as the flag does
    if preset in PRESET_NAMES:  # an unknown name in a file is refused by config.validate, naming the choices
        from host.evolve.presets import preset_values
        file_values = {**preset_values(preset), **file_values, "preset": preset}  # the flag's name wins, as flags do
    if args.demo:
        from host.evolve.demo import DEFAULT_DEMO_OUT, demo_values
        file_values = {**demo_values(args.out or DEFAULT_DEMO_OUT), **file_values}
        flags["data"] = flags["data"] or file_values["data"]
    config = config_module.resolve(file_values, flags)
    if not config.data:
        raise HostError("no data: give --data DIR (an image-folder tree), --demo for the built-in dataset, "
                        "or --resume RUN")
    if config.preset and not (config.pretrained or config.ancestor_from) and os.environ.get("RANK", "0") == "0":
        logging.getLogger("host-evolve").warning(
            "host-evolve: warning: preset %s without --pretrained trains SqueezeNet v1.1 from random weights; its "
            "figures (docs/benchmarks.md section 7) start from the ImageNet weights: add --pretrained "
            "squeezenet1_1_imagenet.pth (torchvision's layout)", config.preset)
    return config


def evolve_main(argv: list[str] | None = None) -> int:
    """host-evolve. Exit status: 0 done, 2 bad input or no room to write (one line naming it and the fix), 130
    Ctrl-C, 143 SIGTERM (both a clean stop: ``--resume`` continues), 1 a bug."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = get_args_parser().parse_args(argv)
    from host.evolve.progress import set_quiet
    set_quiet(args.quiet)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if on_main_thread else None
    try:
        return _evolve(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _close_progress_bars() -> None:
    """Bars a stopped evolution left open, closed before its last line (else their clean-up at exit follows it)."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _evolve(args: argparse.Namespace) -> int:
    config = None
    try:
        config = resolve_config(args)
        from host.evolve.evolution import evolve  # torch is imported only once the arguments are known to be good
        summary = evolve(config, resume=bool(args.resume))
    except (HostError, ContractError) as error:  # the shared layer's (a preprocessing spec, a labels file...)
        _close_progress_bars()
        print(f"host-evolve: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        _close_progress_bars()
        run = config.out if config is not None else (args.resume or args.out)
        how = "stopped by SIGTERM" if isinstance(stop, Stopped) else "interrupted"
        if run and (Path(run) / "config.json").is_file():
            print(f"\nhost-evolve: {how}; continue with: {command('host-evolve')} --resume "
                  f"{shlex.quote(str(run))}", file=sys.stderr)
        else:
            print(f"\nhost-evolve: {how} before the run started; nothing was kept", file=sys.stderr)
        return 128 + (stop.signum if isinstance(stop, Stopped) else signal.SIGINT)
    except Exception as error:  # OSError (ENOSPC, EFBIG, EDQUOT) or sqlite3's SQLITE_FULL: no room to write
        run = config.out if config is not None else None
        message = write_failure(error, run, command("host-evolve")) or os_failure(error, run, command("host-evolve"))
        if message is None:
            raise
        _close_progress_bars()
        print(f"host-evolve: error: {message}", file=sys.stderr)
        return 2
    if summary:  # ranks other than 0 of a torchrun job return an empty summary
        print_outcome(config, summary)
    return 0


def command(name: str) -> str:
    """How to run one of this distribution's commands from a fresh shell: its path beside this Python (a venv's
    bin/ is not on a fresh shell's PATH) when it is there, else its bare name."""
    beside = Path(sys.executable).parent / name
    return shlex.quote(str(beside)) if beside.is_file() else name


def print_recall(what: str, generation: dict) -> None:
    """One line of per-class recall on the validation split (a class the model never answers shows 0 %)."""
    recall = generation.get("recall")
    if not recall:
        return
    shown = ", ".join(f"{name} {'-' if value is None else f'{100 * value:.0f} %'}" for name, value in
                      list(recall.items())[:12]) + (", ..." if len(recall) > 12 else "")
    never = generation.get("never_predicts") or []
    print(f"recall per class, {what}: {shown}" + (f"; never answers {', '.join(never[:3])}" if never else ""))


def print_outcome(config: config_module.EvolveConfig, summary: dict) -> None:
    gens = summary["generations"]
    first, last = gens[0], gens[-1]
    print(f"\n{len(gens)} generations in {config.out}: {first['size_mb']:.3f} MB -> {last['size_mb']:.3f} MB "
          f"({first['size_bytes'] / last['size_bytes']:.2f}x smaller), top-1 {100 * first['top1']:.1f} % -> "
          f"{100 * last['top1']:.1f} %; Pareto front: generations {summary['pareto']}")
    if summary.get("stopped"):
        print(f"stopped: {summary['stopped']}")
    print(f"report: {Path(config.out) / 'report.png'}, summary: {Path(config.out) / 'summary.json'}")
    if (summary.get("validation") or {}).get("warning"):
        print(f"warning: {summary['validation']['warning']}")
    best = next((g for g in gens if g["generation"] == summary.get("best_generation")), None)
    print_recall("ancestor (generation 0)", first)
    if best is None:
        print(f"no generation to deploy: {summary.get('best_reason')}")
        return
    if best is not first:
        print_recall(f"best (generation {best['generation']})", best)
    print(f"best: {summary['best_reason']}")
    for device, fastest in (summary.get("fastest_within_bar") or {}).items():
        print(f"fastest within the bar on {device}: generation {fastest['generation']}, {fastest['fps']:.0f} img/s "
              "(its batch-1 benchmark)")
    print(f"serve it to devices:   {command('host-serve')} --run {shlex.quote(str(config.out))}")
    print(f"classify live:         {command('device-serve')} --model "
          f"{shlex.quote(str(Path(config.out) / best['onnx']))} --source synthetic --http 8080")


if __name__ == "__main__":
    sys.exit(evolve_main())
