"""The run folder as host-serve serves it: checked to be a run before anything is written, its lineage.sqlite
read through one read-only connection per request thread (WAL: reads never wait for the writer), written through
one shared connection, and each served ONNX file's sha256 checked once per file version."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from fastapi import HTTPException

from contract.files import sha256_of_file
from contract.generation_files import CARD_JSON, CARD_KEYS, MODEL_ONNX
from host.errors import HostError
from host.run.lineage import Lineage


class ModelFiles:
    """Checks each served ONNX against the sha256 in the lineage once per file version (size, mtime)."""

    def __init__(self):
        self._checked: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._checked:
                self._checked[key] = sha256_of_file(path)
            return self._checked[key]


def check_run_folder(run: str | Path) -> Path:
    """``run`` resolved, or HostError when it is not a run folder (no RUN/lineage.sqlite). Writes nothing.
    A run on a read-only folder or mount is a run (:func:`run_is_read_only`: served read-only)."""
    run = Path(run).resolve()
    database = run / "lineage.sqlite"
    if not database.is_file():
        raise HostError(f"{run} is not a run folder: {not_a_run(run)}")
    if not os.access(database, os.R_OK):
        raise HostError(f"{database} cannot be read by this user: run host-serve as the run's owner, or let it "
                        f"read the folder (chmod -R a+rX {run})")
    read_only = run_is_read_only(run)
    options = "mode=ro&immutable=1" if read_only else "mode=ro"
    try:  # read-only: a file that is not a run's database is refused before anything writes to it
        with closing(sqlite3.connect(f"{database.as_uri()}?{options}", uri=True, timeout=30)) as connection:
            connection.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as error:  # (a run host-evolve has just begun may have no tables yet: fine)
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            raise HostError(f"{database} is locked by another process's write (a long transaction, a sqlite3 "
                            f"shell in BEGIN?); end it and start host-serve again") from None
        raise HostError(f"{database} is not a run's SQLite database ({error}): give a folder made by host-evolve, "
                        f"or restore its lineage.sqlite") from None
    return run


def database_identity(run: Path) -> tuple | None:
    """(st_dev, st_ino) of RUN/lineage.sqlite, or None when there is none."""
    try:
        status = os.stat(run / "lineage.sqlite")
    except OSError:
        return None
    return status.st_dev, status.st_ino


def not_a_run(folder: Path) -> str:
    """What a folder without lineage.sqlite is, and what to give host-serve instead, in the user's terms: no such
    folder or an empty one (host-evolve --out makes a run there), an image-folder dataset (host-evolve's --data,
    not its --out), or some other folder."""
    from contract.images import is_image_name
    if not folder.is_dir():
        return f"there is no such folder; make a run there with host-evolve --data DIR --out {folder}"
    try:
        entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    except OSError as error:
        return f"it cannot be listed ({error.strerror or error}); run host-serve as its owner"
    if not entries:
        return f"it is empty; make a run there with host-evolve --data DIR --out {folder}"
    classes = []
    for entry in sorted(entries):
        try:
            if entry.is_dir() and any(is_image_name(child.name) for child in entry.iterdir()):
                classes.append(entry.name)
        except OSError:
            continue
    if classes:
        shown = ", ".join(name + "/" for name in classes[:3]) + (", ..." if len(classes) > 3 else "")
        return (f"it is an image-folder dataset (class folders {shown} with images), host-evolve's --data; serve "
                f"the run made from it instead: host-evolve --data {folder} --out RUN, then host-serve --run RUN")
    return (f"it holds no lineage.sqlite ({len(entries)} other entries); give the folder host-evolve --out wrote "
            "(RUN, with lineage.sqlite and gen-XX/)")


def run_is_read_only(run: Path) -> bool:
    """Whether the run's folder or its lineage.sqlite cannot be written by this process (a read-only mount,
    an archived run, another user's files): then it is served read-only, reports refused with a 503."""
    return not (os.access(run, os.W_OK) and os.access(run / "lineage.sqlite", os.W_OK))


class ThreadReaders(threading.local):
    """One read-only connection to lineage.sqlite per request thread: reads never wait for the writer."""

    def __init__(self, path: Path, immutable: bool):
        self.path, self.immutable, self.lineage = path, immutable, None

    def get(self) -> Lineage:
        if self.lineage is None:
            self.lineage = Lineage.reader(self.path, immutable=self.immutable)
        return self.lineage


GENERATION_ALIASES = ("latest", "best")
MAX_GENERATION = 2 ** 63 - 1  # SQLite's INTEGER: a larger number can name no generation


class ServedRun:
    """One run as host-serve serves it: ``root`` (checked: :func:`check_run_folder`), ``read_only``, the
    writer ``lineage`` (None when read-only) with its ``write_lock``, a read-only reader per request thread
    (:meth:`reader`), the served files' sha256 checks (``files``), and the lookups the routes share."""

    def __init__(self, run: str | Path, read_only: bool | None = None):
        self.root = check_run_folder(run)
        self.read_only = run_is_read_only(self.root) if read_only is None else read_only
        self.lineage = None if self.read_only else Lineage(self.root / "lineage.sqlite")
        self.identity = database_identity(self.root)  # (device, inode) of the lineage.sqlite being served
        self._said_replaced = False
        self.write_lock = threading.Lock()  # one writer connection shared by the request threads
        self.readers = ThreadReaders(self.root / "lineage.sqlite", immutable=self.read_only)
        self.files = ModelFiles()
        self._said_changed: set = set()
        self._figures: dict = {"key": None, "value": None}
        self._figures_lock = threading.Lock()
        self._redraw = threading.Event()
        self._redrawer: threading.Thread | None = None

    def reader(self) -> Lineage:
        self.check_same_run()
        return self.readers.get()

    def check_same_run(self) -> None:
        """HTTPException 503 (and one line in the log) when the run's lineage.sqlite is no longer the file
        host-serve opened -- deleted, or the run folder moved or replaced while served: a report answered 201 then
        would be lost, or land in the old folder. Checked before every answer that reads or writes the run."""
        if database_identity(self.root) == self.identity:
            return
        if not self._said_replaced:
            self._said_replaced = True
            import sys
            print(f"host-serve: {self.root / 'lineage.sqlite'} was replaced, moved or deleted while served; "
                  f"answering 503 until host-serve is started again on the run (devices keep their reports)",
                  file=sys.stderr, flush=True)
        raise HTTPException(503, "the run host-serve was serving was replaced, moved or deleted; its operator must "
                                 "start host-serve again (the device keeps its reports and sends them then)",
                            headers={"Retry-After": "60"})

    def device_figures(self, reader: Lineage) -> tuple:
        """(device_fps, device_figures), read from every stored report once per new report, not once per
        request: /generations and / are public, and with 20,000 reports a fresh read took 0.7 s of CPU, which
        anyone could ask for again and again."""
        key = tuple(reader.db.execute("SELECT max(id), count(*) FROM device_reports").fetchone())
        with self._figures_lock:
            if self._figures["key"] != key:
                self._figures["value"] = (reader.device_fps(), reader.device_figures())
                self._figures["key"] = key
            return self._figures["value"]

    def generation_row(self, number: int) -> dict:
        row = self.reader().generation(number)
        if row is None:
            raise HTTPException(404, f"generation {number} is not in this run")
        return row

    def resolve_generation(self, text: str) -> dict:
        """A generation's row from a number, ``latest`` or ``best``; 404 (with what is allowed) otherwise."""
        from host.run.acceptance import run_best_generation
        if text in GENERATION_ALIASES:
            reader = self.reader()
            rows, config = reader.generations(), reader.config()
            number = rows[-1]["generation"] if text == "latest" and rows else run_best_generation(rows, config)[0]
            if number is None:
                raise HTTPException(404, f"the run has no {text} generation yet")
            return self.generation_row(number)
        if not text.isdigit() or int(text) > MAX_GENERATION:
            raise HTTPException(404, f"generation {text[:40]!r} is not a generation: give a number, 'latest' or 'best'")
        return self.generation_row(int(text))

    def expected_sha256(self, row: dict, onnx_path: Path, name: str) -> str:
        """model.onnx: the lineage's sha256; a twin: the one card.json (written with it) records."""
        if name == MODEL_ONNX:
            return row["sha256"]
        try:
            card = json.loads((onnx_path.parent / CARD_JSON).read_text())
            return card[CARD_KEYS[name]]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise HTTPException(404, f"{name} of generation {row['generation']} has no sha256 in its {CARD_JSON}: "
                                     f"re-export the generation") from None

    def first_time_changed(self, path: Path, actual: str) -> bool:
        """True the first time a served file is found with this other sha256 (host-serve logs it once)."""
        if (path, actual) in self._said_changed:
            return False
        self._said_changed.add((path, actual))
        return True

    def redraw_soon(self) -> None:
        """summary.json and report.png drawn again from the lineage a few seconds after new device figures
        arrive (host/run/report.py redraw: the speed panel and the deploy answer follow the devices), at most one
        redraw at a time and every REDRAW_DELAY_S; nothing on a read-only run. A failure (a full disk) is said
        once in the log and never reaches a request."""
        if self.read_only:
            return
        self._redraw.set()
        if self._redrawer is None or not self._redrawer.is_alive():
            self._redrawer = threading.Thread(target=self._redraw_loop, name="host-serve-redraw", daemon=True)
            self._redrawer.start()

    def _redraw_loop(self) -> None:
        import sys
        import time
        from host.run.layout import RunLayout
        from host.run.report import redraw
        said = False
        while self._redraw.is_set():
            time.sleep(REDRAW_DELAY_S)
            self._redraw.clear()
            reader = None
            try:
                reader = Lineage.reader(self.root / "lineage.sqlite")
                redraw(RunLayout(self.root), reader)
            except Exception as error:  # a full disk, a locked file, a figure that will not draw: said once
                if not said:
                    print(f"host-serve: could not redraw {self.root}/summary.json and report.png ({error}); the "
                          f"reports are stored, and the next report tries again", file=sys.stderr, flush=True)
                    said = True
            finally:
                if reader is not None:
                    reader.close()


REDRAW_DELAY_S = 2.0  # new device figures in summary.json and report.png this soon after they arrive
