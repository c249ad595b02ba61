"""One offspring trained to the end: its epochs from where the training checkpoint left off, each diverging
epoch rolled back and retried at half the rate, a checkpoint after every finished epoch.

The format of the checkpoint is host/evolve/checkpoints.py's (TrainingState: one writer, one reader); the loop
that breeds, evaluates and records offspring is host/evolve/evolution.py's ``Evolution.breed``.
"""
from __future__ import annotations

import copy

from host.errors import HostError
from host.evolve.checkpoints import TrainingState
from host.evolve.train import Diverged, derive_seed, make_optimizer, set_peak_lr, steps_per_epoch, train_one_epoch

MAX_RETRIES = 3  # a diverging epoch is retried at half the rate up to this many times, then the run stops


def train_offspring(state: TrainingState, epochs: int, settings, *, data, device, teacher, recorder, world,
                    seed: int, checkpoint_path, resume_hint: str, base_lr: float) -> TrainingState:
    """Train ``state.model`` (already on ``device``, channels-last) from ``state.epochs_done`` to ``epochs``
    with ``settings`` (host/evolve/train.py's TrainSettings) on ``data`` (train split and spec), distilling from
    ``teacher`` (or None); ``state`` is updated in place and returned.

    After every finished epoch the checkpoint (``state.to_checkpoint()``) is written to ``checkpoint_path``
    first, then the epoch's lineage row (``recorder.epoch``): a kill between the two loses no epoch.
    A Diverged epoch (non-finite or exploding loss) is rolled back -- weights, momentum and schedule -- and
    retried at half the peak rate, up to MAX_RETRIES times; then HostError naming the rate to resume with
    (``resume_hint``: "host-evolve --resume RUN", ``base_lr``: the configured --lr). The rate's scale is kept
    in the checkpoint, so a resumed offspring goes on at the rate that worked."""
    model = state.model
    optimizer, scheduler = make_optimizer(model, settings, max(1, epochs) * steps_per_epoch(
        len(data.train), settings.batch_size))
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
    set_peak_lr(optimizer, scheduler, settings.lr * state.lr_scale)  # a resume with a lower --lr takes effect here
    generation, index = state.generation, state.offspring
    for epoch in range(state.epochs_done, epochs):
        desc = f"gen {generation:02d}.{index} epoch {epoch + 1}/{epochs}"
        snapshot = copy.deepcopy((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()))
        for retry in range(MAX_RETRIES + 1):
            try:
                stats = train_one_epoch(model, data.train, data.spec, optimizer, scheduler, settings,
                                        derive_seed(seed, generation, index, epoch), device, teacher,
                                        desc=desc, world=world)
                break
            except Diverged as diverged:  # roll the epoch back: weights, momentum and schedule
                model.load_state_dict(snapshot[0])
                optimizer.load_state_dict(snapshot[1])
                scheduler.load_state_dict(snapshot[2])
                rate = settings.lr * state.lr_scale
                if retry == MAX_RETRIES:
                    raise HostError(
                        f"training diverged in generation {generation} offspring {index} epoch {epoch + 1} "
                        f"({diverged}) at peak rate {rate:.3g}, after {MAX_RETRIES} retries at half the rate "
                        f"each; nothing of it was recorded. Rescue the run: {resume_hint} "
                        f"--lr {base_lr * state.lr_scale / 4:.3g}") from None
                state.lr_scale *= 0.5
                set_peak_lr(optimizer, scheduler, settings.lr * state.lr_scale)
                recorder.warn(f"{desc}: training diverged ({diverged}) at peak rate {rate:.3g}; the epoch "
                              f"is rolled back and retried at {settings.lr * state.lr_scale:.3g}")
        stats["lr_scale"] = state.lr_scale
        state.train_seconds += stats["seconds"]
        state.history.append(stats)
        state.epochs_done = epoch + 1
        state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
        # the checkpoint first, then the lineage row: a kill between the two loses no epoch (the row is
        # written again from the checkpoint's history on resume), a kill before both redoes this epoch
        recorder.checkpoint(state.to_checkpoint(), checkpoint_path)
        recorder.epoch(generation, index, epoch, stats)
        recorder.say(f"  {desc}: loss {stats['loss']:.3f}, train top-1 {100 * stats['train_top1']:.1f} %, "
                     f"{stats['images_per_second']:.0f} img/s")
    return state
