"""Claiming a run folder: a new run only in an empty or new folder, a run continued only by --resume with
its own config, and one writer per run at a time (a lock that the operating system drops when the writer
dies, so kill -9 never leaves a stale lock behind)."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from host.errors import HostError
from host.layout import RunLayout

# what --resume may change (everything else would mix two experiments in one lineage)
RESUMABLE_KEYS = ("generations", "device", "target_fps", "top1_floor", "steer", "latency_from")
# what a new run's folder may already hold: the dataset host-evolve --demo writes before the run starts, and
# what a host-evolve killed before it wrote config.json left (the run never began: it may start again),
# including contract.files.atomic_write's temporary file (.config.json.XXXX.partial)
# what a host-evolve killed before its config.json leaves (the rollback journal: killed inside SQLite's first
# transaction, before WAL mode is on; found by bench/kill_trials.py, 2 of 18 trials)
PRE_RUN_ENTRIES = ("demo-data", "host-evolve.lock", "lineage.sqlite", "lineage.sqlite-wal", "lineage.sqlite-shm",
                   "lineage.sqlite-journal")


def _left_before_the_run(name: str) -> bool:
    return name in PRE_RUN_ENTRIES or (name.startswith(".config.json.") and name.endswith(".partial"))


def config_diff(saved: dict, given: dict, ignore=("out",) + RESUMABLE_KEYS) -> list[str]:
    """'key: saved -> given' for every setting that differs, in key order."""
    keys = sorted((set(saved) | set(given)) - set(ignore))
    return [f"{k}: {saved.get(k)!r} -> {given.get(k)!r}" for k in keys if saved.get(k) != given.get(k)]


class RunClaim:
    """This process's hold on a run folder: the lock, and whether the run is new (so a refusal while it is
    being set up can take back what it wrote)."""

    def __init__(self, layout: RunLayout, lock_file, new: bool, created_root: bool):
        self.layout, self.lock_file, self.new, self.created_root = layout, lock_file, new, created_root

    def release(self) -> None:
        if self.lock_file is not None:
            self.lock_file.truncate(0)  # no holder named any more
            self.lock_file.close()  # closing drops the flock
            self.lock_file = None

    def undo_setup(self) -> None:
        """A new run refused during set-up (bad --data): remove what it wrote, leave the folder as it was."""
        if not self.new:
            return
        layout = self.layout
        for path in (layout.config, layout.lineage, layout.lineage.with_name(layout.lineage.name + "-wal"),
                     layout.lineage.with_name(layout.lineage.name + "-shm"), layout.lock):
            path.unlink(missing_ok=True)
        shutil.rmtree(layout.cache, ignore_errors=True)
        self.release()
        if self.created_root:
            try:
                layout.root.rmdir()  # only if nothing else is in it
            except OSError:
                pass


def claim(layout: RunLayout, config: dict, resume: bool) -> RunClaim:
    """Check that ``layout.root`` may take this run, create it if needed, and take its lock."""
    root = layout.root
    option = "--resume" if resume else "--out"
    if root.exists() and not root.is_dir():
        raise HostError(f"{option} {root} is a file, not a folder; give a folder (new or empty for a new run)")
    created_root = not root.exists()
    existing = [] if created_root else sorted(p.name for p in _entries(root, option) if not _left_before_the_run(p.name))
    if not resume and existing:
        if layout.config.is_file():
            diff = config_diff(_saved_config(layout), config, ignore=("out",))
            raise HostError(f"--out {root} is a run already; continue it with host-evolve --resume {root}, or give "
                            "a new or empty --out" + (f" (its config differs from this one: {'; '.join(diff)})"
                                                     if diff else ""))
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise HostError(f"--out {root} holds files that are not a host-evolve run ({shown}); give a new or empty "
                        "folder, so nothing there is overwritten")
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_file = open(layout.lock, "a+", encoding="utf-8")
    except OSError as error:
        raise HostError(f"{option} {root}: cannot write there ({error.strerror or error}); give a folder you can "
                        "write to") from error
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = (lock_file.read().strip().splitlines() or ["another process"])[0]
        lock_file.close()
        raise HostError(f"{root} is being written by {holder}; one host-evolve per run: wait for it to finish "
                        f"(or stop it), then host-evolve --resume {root}") from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"host-evolve pid {os.getpid()}\n")
    lock_file.flush()
    if resume and layout.config.is_file():
        diff = config_diff(_saved_config(layout), config)
        if diff:
            lock_file.close()
            raise HostError(f"--resume {root}: this config differs from the run's ({'; '.join(diff)}); only "
                            f"{', '.join(RESUMABLE_KEYS)} may change on resume. Start a new run with --out for the rest")
    return RunClaim(layout, lock_file, new=not resume, created_root=created_root)


def _entries(root: Path, option: str) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError as error:
        raise HostError(f"{option} {root}: cannot read the folder ({error.strerror or error})") from error


def _saved_config(layout: RunLayout) -> dict:
    try:
        values = json.loads(layout.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise HostError(f"{layout.config} is not a readable host-evolve config ({error}); restore it (the run's "
                        "lineage.sqlite keeps a copy in its config table) or start a new run") from error
    if not isinstance(values, dict):
        raise HostError(f"{layout.config} is not a host-evolve config (a JSON object of settings)")
    return values
