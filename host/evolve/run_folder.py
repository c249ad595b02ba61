"""Claiming a run folder: a new run only in an empty or new folder, a run continued only by --resume with
its own config, and one writer per run at a time (a lock that the operating system drops when the writer
dies, so kill -9 never leaves a stale lock behind); the temporary files a stopped run left removed once the lock
is held. A run's identity and health: one dataset per run (its classes and files, checked on resume), the files
a resume reads checked first (lineage, checkpoint, weights), and a write that found no room told in one line."""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import resource
import shlex
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from host.evolve.config import run_paths
from host.errors import HostError
from contract.generation_files import OFFSPRING_WEIGHTS
from host.run.layout import SPEED_PROBE_ONNX, RunLayout

log = logging.getLogger("squishednets.run_folder")

# what --resume may change (everything else would mix two experiments in one lineage)
# lr: a run stopped because training diverged is rescued by resuming at a lower rate (lineage.sqlite's
# config_history keeps every change); top1_tolerance only changes which generation summary.json names best
RESUMABLE_KEYS = ("generations", "device", "target_fps", "top1_floor", "steer", "latency_from", "lr",
                  "top1_tolerance")
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
            diff = config_diff(run_paths(_saved_config(layout), root), config, ignore=("out",))
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
    remove_partials(layout)  # the lock's holder is the only writer: any temporary file is a stopped one's
    if resume and layout.config.is_file():
        diff = config_diff(run_paths(_saved_config(layout), root), config)
        if diff:
            lock_file.close()
            raise HostError(f"--resume {root}: this config differs from the run's ({'; '.join(diff)}); only "
                            f"{', '.join(RESUMABLE_KEYS)} may change on resume. Start a new run with --out for the rest")
        diff = recorded_config_diff(layout, config)
        if diff:
            lock_file.close()
            raise HostError(f"--resume {root}: {layout.config} differs from the run's own record in lineage.sqlite "
                            f"({'; '.join(diff)}): the run was made with the recorded values. Put them back in "
                            f"config.json, or start a new run with --out for the new ones")
    return RunClaim(layout, lock_file, new=not resume, created_root=created_root)


def recorded_config_diff(layout: RunLayout, config: dict) -> list[str]:
    """What ``config`` (config.json as resumed) changes from the config the run recorded in lineage.sqlite -- the
    truth, since config.json is a plain file anyone may edit. Paths may move (a run or its data copied elsewhere)
    and the keys --resume may change are compared with the record by their own rule; [] when nothing else differs
    or the run predates the record."""
    import sqlite3 as sqlite
    from host.evolve.config import PATH_KEYS
    if not layout.lineage.is_file():
        return []
    try:
        with closing_connection(layout.lineage) as db:
            recorded = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM config")}
    except (sqlite.Error, ValueError):
        return []  # unreadable: check_run_files says so, by name
    both = set(recorded) & set(config)  # a key one version has and the other not is no edit
    return config_diff({k: recorded[k] for k in both}, {k: config[k] for k in both},
                       ignore=("out",) + RESUMABLE_KEYS + tuple(PATH_KEYS))


def closing_connection(path: Path):
    """A read-only sqlite3 connection to ``path``, closed on leaving the with-block."""
    import contextlib
    import sqlite3 as sqlite
    return contextlib.closing(sqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30))


# the temporary files host-evolve writes (contract.files.atomic_write's .NAME.XXXXXXXX.partial, the image cache's
# NAME.partial, the --fps-weight speed model), which a kill -9 (or a signal in the instant a write begins) leaves
PARTIAL_PATTERNS = (".config.json.*.partial", ".checkpoint.pt.*.partial", ".summary.json.*.partial",
                    ".report.png.*.partial", "gen-[0-9]*/.*.partial", "cache/*.partial", "cache/.*.partial",
                    SPEED_PROBE_ONNX)


def remove_partials(layout: RunLayout) -> list[Path]:
    """Remove the temporary files a stopped host-evolve left in the run folder (call it holding the run's
    lock: then none is being written). Returns what was removed; says so when it removed any."""
    removed = []
    for pattern in PARTIAL_PATTERNS:
        for path in layout.root.glob(pattern):
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("could not remove the temporary file %s (%s)", path, error.strerror or error)
                continue
            removed.append((path, size))
    if removed:
        log.info("removed %d temporary file(s) (%.1f MB) that a stopped host-evolve left in %s, e.g. %s",
                 len(removed), sum(size for _, size in removed) / 1e6, layout.root, removed[0][0].name)
    return [path for path, _ in removed]


# a write that failed for want of room: the cause, and what frees it
NO_ROOM = {errno.EROFS: ("its disk has become read-only (an SD card or USB disk the system remounted read-only "
                         "after errors?)", "check the disk (dmesg; e2fsck) and mount it writable again"),
           errno.ENOSPC: ("no space left on its disk", "free space there"),
           errno.EDQUOT: ("the disk quota is used up", "free space there or raise the quota"),
           errno.EFBIG: ("a file-size limit was reached (ulimit -f)", "raise the limit (ulimit -f unlimited)")}


def write_failure(error: BaseException, run: str | Path | None, program: str = "host-evolve") -> str | None:
    """The one line for an evolution stopped because a file could not be written for want of room (a full
    disk, a quota, a file-size limit; SQLite's SQLITE_FULL or SQLITE_IOERR for lineage.sqlite), naming the file,
    the cause and the fix; None for any other error. Every file is written whole or not at all, so nothing finished is lost."""
    if isinstance(error, sqlite3.Error):
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        path = Path(run) / "lineage.sqlite" if run else "lineage.sqlite"
        if code == sqlite3.SQLITE_FULL:
            cause, fix = NO_ROOM[errno.ENOSPC]
        elif code == sqlite3.SQLITE_IOERR and resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # SQLite reports EFBIG as an I/O error
            cause = f"a disk I/O error ({error.sqlite_errorname}) under a file-size limit of {limit:,} bytes (ulimit -f)"
            fix = NO_ROOM[errno.EFBIG][1]
        elif code == sqlite3.SQLITE_IOERR:
            cause = f"a disk I/O error ({error.sqlite_errorname})"
            fix = "see that its disk has room (df -h) and is healthy (dmesg)"
        else:
            return None
    elif isinstance(error, OSError) and error.errno in NO_ROOM:
        path, (cause, fix) = error.filename or run or "the run folder", NO_ROOM[error.errno]
    else:
        return None
    if run and _has_config(run):
        then = f"{program} --resume {shlex.quote(str(run))} (nothing finished is lost)"
    else:
        then = "run the same command again (the run had not started)"
    return f"cannot write {path}: {cause}; {fix}, then {then}"


#: what to do about an OS error on a path host-evolve was given (its run folder, cache, data), by errno
OS_FIXES = {errno.ENAMETOOLONG: "give a shorter path (a name is at most 255 bytes)",
            errno.ENOENT: "give a place that exists or can be made",
            errno.ENOTDIR: "a part of the path is a file, not a folder: give another place",
            errno.EACCES: "give a place this user may write (or run as its owner)",
            errno.EPERM: "give a place this user may write (or run as its owner)",
            errno.EISDIR: "it is a folder: give a file's name",
            errno.ELOOP: "the path loops through links: give another",
            errno.EIO: "the disk reports an I/O error: check it (dmesg) and run again"}


def _has_config(run) -> bool:
    """Whether ``run`` holds a config.json (a run began there); False where the path cannot even be looked at."""
    try:
        return (Path(run) / "config.json").is_file()
    except OSError:  # a name too long, a loop of links
        return False


def os_failure(error: BaseException, run: str | Path | None, program: str = "host-evolve") -> str | None:
    """The one line for an OS error on a named file that is not for want of room (:func:`write_failure`): a name
    too long, a folder that cannot be made, permission denied, an I/O error; None for anything else (a bug)."""
    if not isinstance(error, OSError) or error.errno not in OS_FIXES:
        return None
    path = error.filename or run or "the run folder"
    then = (f"then {program} --resume {shlex.quote(str(run))}" if run and _has_config(run)
            else "then run the same command again (the run had not started)")
    return f"cannot use {path}: {error.strerror or error}; {OS_FIXES[error.errno]}, {then}"


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


def check_data(lineage, identity, data: str, run, resume: bool, record: bool = True) -> None:
    """One run, one dataset. A new run records its data's identity (``identity``: host.evolve.data.DataIdentity of
    the folder ``data``: classes and files) in ``lineage``; a resumed run compares the folder with it and is
    refused, naming the classes and files that differ, when it is other data. ``record``: this process writes
    the lineage (rank 0). A run made before identities were recorded gets its data's recorded now."""
    saved = lineage.dataset() if resume else None
    if saved is None:
        if resume:
            log.info("%s: this run predates data identities; recorded the classes and files of %s", run, data)
        if record:
            lineage.save_dataset(data, identity.to_record())
        return
    if saved["sha256"] == identity.sha256:
        return
    differences = type(identity).from_record(saved).differences(identity)
    raise HostError(f"--resume {run}: {data} holds other data than this run was trained on "
                    f"({'; '.join(differences)}); one run trains on one dataset: put the run's data back in "
                    f"{data}, or start a new run with --out for this data")


CHECKPOINT_KEYS = ("generation", "offspring", "epochs_done", "genome", "model", "optimizer", "scheduler", "lambda",
                   "train_seconds", "history")


def _reason(error: BaseException) -> str:
    """An exception as a short phrase for a one-line message."""
    text = (str(error).strip().splitlines() or [""])[0].strip()
    return (text[:120] + ("..." if len(text) > 120 else "")) if text else type(error).__name__


def check_run_files(layout: RunLayout) -> None:
    """--resume: the run's files that the continuation reads, checked before anything is written, each refused
    in one line that names the file and what to do: lineage.sqlite (SQLite's quick_check), checkpoint.pt (the
    offspring in training) and the weights of the last generation (the next parent), of generation 0 (a
    teacher) and of the offspring of a generation not finished yet."""
    run = layout.root
    new_run = (f"or start a new run from an intact generation: host-evolve --data DATA --out NEW "
               f"--ancestor-from {run}/gen-XX/{OFFSPRING_WEIGHTS.format('K')}")
    if not layout.lineage.is_file():
        if any(run.glob("gen-[0-9]*")):
            raise HostError(f"--resume {run}: {layout.lineage} is missing, and it holds the run's record "
                            f"(generations, offspring, epochs); restore it from a backup, {new_run}")
        return
    try:
        with closing(sqlite3.connect(str(layout.lineage), timeout=30)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:2]))
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            generations = (db.execute("SELECT generation, weights FROM generations ORDER BY generation").fetchall()
                           if "generations" in tables else [])
            offspring = (db.execute("SELECT generation, offspring, weights FROM offspring ORDER BY 1, 2").fetchall()
                         if "offspring" in tables else [])
    except sqlite3.DatabaseError as error:
        raise HostError(f"--resume {run}: {layout.lineage} is damaged ({_reason(error)}); it holds the run's record "
                        f"(generations, offspring, epochs): restore it from a backup, {new_run}") from error
    if layout.checkpoint.is_file():
        try:
            _check_checkpoint(layout.checkpoint)
        except Exception as error:  # torch's readers raise many types (RuntimeError, UnpicklingError, EOFError ...)
            raise HostError(f"--resume {run}: {layout.checkpoint} is damaged ({_reason(error)}); it holds only the "
                            "offspring in training: delete it and --resume again, and that offspring's training "
                            "starts over (finished offspring and generations are kept)") from error
    finished = {generation for generation, _ in generations}
    wanted = {}  # path -> what it is
    if generations:
        wanted[generations[0][1]] = "generation 0's weights (the ancestor)"
        wanted[generations[-1][1]] = f"generation {generations[-1][0]}'s weights (the next parent)"
    for generation, index, weights in offspring:
        if generation not in finished:
            wanted[weights] = f"generation {generation}'s offspring {index} (trained, not yet exported)"
    earlier = {weights: previous for (_, previous), (_, weights) in zip(generations, generations[1:])}
    for weights, what in wanted.items():
        path = run / weights
        try:
            check_weights(path)
        except Exception as error:
            fix = (f"or start a new run from the generation before it: host-evolve --data DATA --out NEW "
                   f"--ancestor-from {run / earlier[weights]}" if weights in earlier else new_run)
            raise HostError(f"--resume {run}: {path}, {what}, is damaged ({_reason(error)}); restore it from a "
                            f"backup, {fix}") from error


def check_weights(path: Path) -> None:
    """A host-evolve model file (genome + state_dict) that loads into its SqueezeNet; raises what torch raises."""
    from host.evolve.checkpoints import load_weights  # here: the CLI imports this module before it knows torch is needed
    if not path.is_file():
        raise FileNotFoundError("missing")
    load_weights(path, "cpu")


def _check_checkpoint(path: Path) -> None:
    from host.evolve.checkpoints import load_checkpoint, read_training_state
    state = load_checkpoint(path)
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    read_training_state(state, dropout=0.5)  # as host.evolve.offspring reads it
