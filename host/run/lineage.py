"""The run's lineage: one SQLite file (WAL) with the resolved config, every offspring, every generation,
skipped input files and the devices' reports. The only writer is the evolution (rank 0) and host-serve."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config_history (
    changed_at REAL NOT NULL, key TEXT NOT NULL, old_value TEXT, new_value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offspring (
    generation INTEGER NOT NULL, offspring INTEGER NOT NULL, parent INTEGER, genome TEXT NOT NULL,
    params INTEGER NOT NULL, size_bytes INTEGER NOT NULL, macs INTEGER NOT NULL,
    top1 REAL NOT NULL, top5 REAL NOT NULL, train_seconds REAL NOT NULL, lambda REAL, weights TEXT NOT NULL,
    local_fps REAL, created_at REAL NOT NULL, PRIMARY KEY (generation, offspring));
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY, parent INTEGER, offspring INTEGER NOT NULL, genome TEXT NOT NULL,
    params INTEGER NOT NULL, size_bytes INTEGER NOT NULL, macs INTEGER NOT NULL,
    top1 REAL NOT NULL, top5 REAL NOT NULL, train_seconds REAL NOT NULL, env_factor REAL, lambda REAL,
    onnx TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE, weights TEXT NOT NULL, labels TEXT NOT NULL,
    card TEXT NOT NULL, local_fps REAL, steering_fps REAL, fps_source TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (
    generation INTEGER NOT NULL, offspring INTEGER NOT NULL, epoch INTEGER NOT NULL, loss REAL NOT NULL,
    train_top1 REAL NOT NULL, seconds REAL NOT NULL, images_per_second REAL NOT NULL,
    PRIMARY KEY (generation, offspring, epoch));
CREATE TABLE IF NOT EXISTS dataset (
    id INTEGER PRIMARY KEY CHECK (id = 1), root TEXT NOT NULL, classes TEXT NOT NULL, files TEXT NOT NULL,
    sha256 TEXT NOT NULL, recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skipped_files (path TEXT PRIMARY KEY, reason TEXT NOT NULL, split TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, sequence INTEGER NOT NULL,
    model_sha256 TEXT NOT NULL, generation INTEGER, kind TEXT NOT NULL, fps REAL, body TEXT NOT NULL,
    received_at REAL NOT NULL, spool_id TEXT NOT NULL DEFAULT '', conflict INTEGER NOT NULL DEFAULT 0,
    UNIQUE (device_id, spool_id, sequence, conflict));
CREATE TABLE IF NOT EXISTS latency_table_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, image_size INTEGER NOT NULL,
    step INTEGER NOT NULL, parent TEXT NOT NULL, requested_at REAL NOT NULL,
    UNIQUE (device_id, image_size, step, parent));
CREATE TABLE IF NOT EXISTS latency_tables (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id INTEGER NOT NULL, device_id TEXT NOT NULL,
    body TEXT NOT NULL, received_at REAL NOT NULL);
"""
# device_reports before reports carried a spool id: UNIQUE (device_id, sequence), which no ALTER can change
_REPORTS_COLUMNS = "id, device_id, sequence, model_sha256, generation, kind, fps, body, received_at"

GENERATION_FIELDS = ("generation", "parent", "offspring", "genome", "params", "size_bytes", "macs", "top1", "top5",
                     "train_seconds", "env_factor", "lambda", "onnx", "sha256", "weights", "labels", "card",
                     "local_fps")
# the device figure steering reads and /generations calls device_fps: device-agent's batch-1 benchmark
STEERING_MEASUREMENT = "benchmark-b1"


def _counts_json(counts) -> str | None:
    """A row's ``val_counts`` (host/evolve/train.py evaluate: per-class support, correct, predicted) as stored."""
    return None if counts is None else (counts if isinstance(counts, str) else json.dumps(counts))


def _with_counts(row) -> dict:
    """A generations row as a dict, its ``val_counts`` parsed (None for a run made before they were kept)."""
    values = dict(row)
    if values.get("val_counts"):
        try:
            values["val_counts"] = json.loads(values["val_counts"])
        except ValueError:
            values["val_counts"] = None
    return values


class Lineage:
    """Thin, explicit access to lineage.sqlite. Every write is its own committed transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._add_missing_columns()
        self._identify_reports_by_spool()

    @classmethod
    def reader(cls, path: str | Path, immutable: bool = False) -> "Lineage":
        """A read-only connection to lineage.sqlite: it never takes the write lock, so it reads (WAL) while
        another connection or process writes. ``immutable``: the file is on a read-only folder or mount
        (SQLite then needs no -shm file beside it; nothing may change the file meanwhile)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        options = "mode=ro&immutable=1" if immutable else "mode=ro"
        self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{options}", uri=True, timeout=5,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        return self

    def _identify_reports_by_spool(self) -> None:
        """A run made before reports carried a spool id: its device_reports table is rebuilt (in one
        transaction, every row kept, spool_id '') so that a report is identified by (device_id, spool_id,
        sequence) and a conflicting one can be kept beside the stored one."""
        have = {row["name"] for row in self.db.execute("PRAGMA table_info(device_reports)")}
        if "spool_id" in have:
            return
        start = SCHEMA.index("CREATE TABLE IF NOT EXISTS device_reports")
        table = SCHEMA[start:SCHEMA.index(";", start)].strip()  # that one statement, whatever follows it
        self.db.execute("BEGIN IMMEDIATE")  # another process opening the run waits, then finds it done
        try:
            have = {row["name"] for row in self.db.execute("PRAGMA table_info(device_reports)")}
            if "spool_id" not in have:
                self.db.execute("ALTER TABLE device_reports RENAME TO device_reports_before_spool_ids")
                self.db.execute(table)
                self.db.execute(f"INSERT INTO device_reports ({_REPORTS_COLUMNS}) "
                                f"SELECT {_REPORTS_COLUMNS} FROM device_reports_before_spool_ids")
                self.db.execute("DROP TABLE device_reports_before_spool_ids")
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def _add_missing_columns(self) -> None:
        """Runs made by an older version gain the newer columns (all nullable); their ``measured_fps`` column
        is renamed ``steering_fps`` (it held the fps that steered R, never a device's own figure)."""
        wanted = {"generations": {"steering_fps": "REAL", "fps_source": "TEXT", "val_counts": "TEXT"},
                  "offspring": {"local_fps": "REAL", "env_factor": "REAL", "lr_scale": "REAL", "proxy_images": "REAL",
                                "candidates": "INTEGER", "val_counts": "TEXT"}}
        for table, columns in wanted.items():
            have = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if table == "generations" and "measured_fps" in have and "steering_fps" not in have:
                with self.db:
                    self.db.execute("ALTER TABLE generations RENAME COLUMN measured_fps TO steering_fps")
                have = (have - {"measured_fps"}) | {"steering_fps"}
            for name, kind in columns.items():
                if name not in have:
                    with self.db:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    # -- config --------------------------------------------------------------------------------
    def save_config(self, config: dict) -> None:
        """The run's resolved config; every value a resumed run changes (--lr, --generations ...) is also kept
        in ``config_history`` with the old and new value and the time."""
        old = self.config()
        changes = [(time.time(), k, json.dumps(old[k]), json.dumps(v)) for k, v in config.items()
                   if k in old and old[k] != v]
        with self.db:
            if changes:
                self.db.executemany("INSERT INTO config_history VALUES (?, ?, ?, ?)", changes)
            self.db.executemany("INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in config.items()])

    def config_history(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM config_history ORDER BY changed_at, key")]

    def config(self) -> dict:
        return {row["key"]: json.loads(row["value"]) for row in self.db.execute("SELECT key, value FROM config")}

    # -- offspring and generations -------------------------------------------------------------
    def add_offspring(self, row: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO offspring (generation, offspring, parent, genome, params, size_bytes, macs, "
                "top1, top5, train_seconds, lambda, weights, local_fps, env_factor, lr_scale, proxy_images, candidates, "
                "val_counts, created_at) VALUES "
                "(:generation, :offspring, :parent, :genome, :params, :size_bytes, :macs, :top1, :top5, "
                ":train_seconds, :lambda, :weights, :local_fps, :env_factor, :lr_scale, :proxy_images, :candidates, "
                ":val_counts, :created_at)",
                {"created_at": time.time(), "local_fps": None, "env_factor": None, "lr_scale": None,
                 "proxy_images": None, "candidates": None, **row, "val_counts": _counts_json(row.get("val_counts"))})

    def all_offspring(self) -> list[dict]:
        return [_with_counts(r) for r in self.db.execute("SELECT * FROM offspring ORDER BY generation, offspring")]

    def offspring(self, generation: int) -> list[dict]:
        return [_with_counts(r) for r in self.db.execute(
            "SELECT * FROM offspring WHERE generation = ? ORDER BY offspring", (generation,))]

    def add_epoch(self, generation: int, offspring: int, epoch: int, stats: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (generation, offspring, epoch, stats["loss"], stats["train_top1"], stats["seconds"],
                             stats["images_per_second"]))

    def epochs(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM epochs ORDER BY generation, offspring, epoch")]

    def add_generation(self, row: dict) -> None:
        values = {field: row.get(field) for field in GENERATION_FIELDS}
        values["val_counts"] = _counts_json(row.get("val_counts"))
        values["created_at"] = time.time()
        with self.db:
            self.db.execute(f"INSERT INTO generations ({', '.join(values)}) VALUES "
                            f"({', '.join(':' + k for k in values)})", values)

    def generations(self) -> list[dict]:
        return [_with_counts(r) for r in self.db.execute("SELECT * FROM generations ORDER BY generation")]

    def generation(self, number: int) -> dict | None:
        row = self.db.execute("SELECT * FROM generations WHERE generation = ?", (number,)).fetchone()
        return _with_counts(row) if row else None

    def generation_by_sha256(self, sha256: str) -> dict | None:
        row = self.db.execute("SELECT * FROM generations WHERE sha256 = ?", (sha256,)).fetchone()
        return dict(row) if row else None

    def set_steering_fps(self, generation: int, fps: float, source: str) -> None:
        """The fps that steers the evolution (``--latency-from``: local ONNX Runtime or a device's report), and
        where it came from. A local figure is also the generation's local_fps, written first: a kill between
        the two writes leaves no steering fps, so a resumed run measures it again and writes both."""
        if source == "local":
            self.set_local_fps(generation, fps)
        with self.db:
            self.db.execute("UPDATE generations SET steering_fps = ?, fps_source = ? WHERE generation = ?",
                            (fps, source, generation))

    def set_local_fps(self, generation: int, fps: float) -> None:
        """The generation's batch-1 speed with ONNX Runtime on this machine (shown in report.png)."""
        with self.db:
            self.db.execute("UPDATE generations SET local_fps = ? WHERE generation = ?", (fps, generation))

    # -- the dataset's identity --------------------------------------------------------------------
    def save_dataset(self, root: str, record: dict) -> None:
        """The run's data: its folder and identity (host.evolve.data.DataIdentity.to_record: classes and files as
        JSON lists, their sha256), recorded once, at the run's start."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO dataset (id, root, classes, files, sha256, recorded_at) "
                            "VALUES (1, ?, ?, ?, ?, ?)",
                            (root, record["classes"], record["files"], record["sha256"], time.time()))

    def dataset(self) -> dict | None:
        """The recorded data identity (root, classes, files, sha256), or None for a run made before issue 18."""
        row = self.db.execute("SELECT * FROM dataset WHERE id = 1").fetchone()
        return dict(row) if row else None

    # -- skipped inputs ------------------------------------------------------------------------
    def add_skipped(self, skipped: list[tuple[str, str]], split: str) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO skipped_files (path, reason, split) VALUES (?, ?, ?)",
                                [(path, reason, split) for path, reason in skipped])

    def skipped(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM skipped_files ORDER BY path")]

    # -- device reports (host-serve) -----------------------------------------------------------
    def add_device_report(self, device_id: str, sequence: int, model_sha256: str, kind: str, fps: float | None,
                          body: dict, spool_id: str = "") -> str:
        """Store a report, identified by (device_id, spool_id, sequence). Returns "stored" (new), "duplicate"
        (the same body is stored already: a resend, ignored) or "conflict": another body is stored under the
        same identity (a device id reused with a copied spool, an older device without spool ids): this one
        is kept too, beside it, with ``conflict`` = 1, 2, ... so nothing a device sent is lost."""
        generation = self.generation_by_sha256(model_sha256)
        text = json.dumps(body, sort_keys=True)
        insert = ("INSERT OR IGNORE INTO device_reports (device_id, spool_id, sequence, conflict, model_sha256, "
                  "generation, kind, fps, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        values = [device_id, spool_id, sequence, 0, model_sha256, generation["generation"] if generation else None,
                  kind, fps, text, time.time()]
        with self.db:
            if self.db.execute(insert, values).rowcount == 1:  # the common case: one statement
                return "stored"
            stored = [row["body"] for row in self.db.execute(
                "SELECT body FROM device_reports WHERE device_id = ? AND spool_id = ? AND sequence = ?",
                (device_id, spool_id, sequence))]
            if text in stored:
                return "duplicate"
            values[3] = len(stored)
            self.db.execute(insert, values)
        return "conflict"

    def latest_device_figure(self, device_id: str, sha256: str,
                             measurement: str = STEERING_MEASUREMENT) -> dict | None:
        """The figure ``device_id`` last reported for the model with ``sha256`` as ``measurement`` (by default the
        batch-1 benchmark device-agent runs for steering; a live figure never stands in for it): the latest
        stable one, else the latest at all. {fps, stable, measurement, device_id, received_at} or None."""
        figures = [f for f in self._figures("AND device_id = ? AND model_sha256 = ?", (device_id, sha256))
                   if f["measurement"] == measurement]
        stable = [f for f in figures if f["stable"] is not False]
        return (stable or figures or [None])[-1]

    def latest_device_fps(self, device_id: str, sha256: str) -> float | None:
        """The fps of :meth:`latest_device_figure` (the batch-1 benchmark), or None."""
        figure = self.latest_device_figure(device_id, sha256)
        return None if figure is None else figure["fps"]

    def device_reports(self, generation: int | None = None, since_id: int = 0, limit: int | None = None) -> list[dict]:
        """Stored reports, oldest first, with ``body`` parsed: those of ``generation`` (all when None) whose
        ``id`` is above ``since_id``, at most ``limit`` of them (a page; the last row's id starts the next)."""
        rows = [dict(r) for r in self._device_report_rows(generation, since_id, limit)]
        for row in rows:
            row["body"] = json.loads(row["body"])
        return rows

    def _figures(self, where: str = "", args: tuple = ()) -> list[dict]:
        """Every stored figure (a benchmark or final report's fps), oldest first, with its ``measurement``."""
        rows = self.db.execute("SELECT id, device_id, generation, model_sha256, kind, fps, body, received_at "
                               f"FROM device_reports WHERE fps IS NOT NULL {where} ORDER BY id", args)
        figures = []
        for row in rows:
            body = json.loads(row["body"])
            stats = body.get("stats") if isinstance(body, dict) else None
            stats = stats if isinstance(stats, dict) else {}
            stable = stats.get("stable")
            figures.append({"device_id": row["device_id"], "generation": row["generation"],
                            "measurement": measurement_of(row["kind"], stats), "fps": row["fps"],
                            "stable": stable if isinstance(stable, bool) else None,
                            "received_at": row["received_at"], "report_id": row["id"]})
        return figures

    def device_figures(self) -> dict[int, list[dict]]:
        """Per generation, the latest figure of each (device, measurement): a live run at 15 fps and a
        benchmark at 160 img/s of the same generation are two figures, and neither overwrites the other.
        Each is {device_id, measurement, fps, stable, received_at}; see :func:`measurement_of`. A figure the device
        marked unstable (``stats.stable`` false) stands only until a stable one of its kind comes, and never
        replaces one."""
        latest: dict[tuple, dict] = {}
        for figure in self._figures("AND generation IS NOT NULL"):
            key = (figure["generation"], figure["device_id"], figure["measurement"])
            if figure["stable"] is False and key in latest and latest[key]["stable"] is not False:
                continue  # an unstable re-run does not replace a stable figure (the unstable one is in /reports)
            latest[key] = figure
        result: dict[int, list[dict]] = {}
        for (generation, _, _), figure in sorted(latest.items(), key=lambda item: (item[0][0], item[0][1], item[0][2])):
            result.setdefault(generation, []).append({k: v for k, v in figure.items() if k != "generation"})
        return result

    def device_report_rows(self, generation: int | None = None, since_id: int = 0,
                           limit: int | None = None) -> list[sqlite3.Row]:
        """As :meth:`device_reports`, with ``body`` the stored JSON text (served as it is, unparsed)."""
        return self._device_report_rows(generation, since_id, limit)

    def _device_report_rows(self, generation, since_id, limit):
        query, args = "SELECT * FROM device_reports WHERE id > ?", [since_id]
        if generation is not None:
            query += " AND generation = ?"
            args.append(generation)
        query += " ORDER BY id"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        return self.db.execute(query, args).fetchall()

    # -- latency tables a device measures (host-evolve --latency-table device:ID) ---------------------
    def request_latency_table(self, device_id: str, image_size: int, step: int, parent: dict) -> int:
        """The id of the request for ``device_id``'s table of ``parent``'s widths at ``image_size`` on a grid of
        ``step`` (made now, or the same request made before: a resumed run asks once)."""
        text = json.dumps(parent, sort_keys=True)
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO latency_table_requests (device_id, image_size, step, parent, "
                            "requested_at) VALUES (?, ?, ?, ?, ?)", (device_id, int(image_size), int(step), text,
                                                                    time.time()))
        return int(self.db.execute("SELECT id FROM latency_table_requests WHERE device_id = ? AND image_size = ? "
                                   "AND step = ? AND parent = ?", (device_id, int(image_size), int(step),
                                                                   text)).fetchone()["id"])

    def latency_table_requests(self) -> list[dict]:
        """Every request, oldest first: id, device_id, image_size, step, parent (dict), answered (bool)."""
        try:
            rows = self.db.execute("SELECT r.id, r.device_id, r.image_size, r.step, r.parent, r.requested_at, "
                                   "EXISTS (SELECT 1 FROM latency_tables t WHERE t.request_id = r.id) AS answered "
                                   "FROM latency_table_requests r ORDER BY r.id").fetchall()
        except sqlite3.OperationalError as error:  # a read-only run made before tables were asked for
            if "no such table" in str(error):
                return []
            raise
        return [dict(row, parent=json.loads(row["parent"]), answered=bool(row["answered"])) for row in rows]

    def latency_table_request(self, request_id: int) -> dict | None:
        for request in self.latency_table_requests():
            if request["id"] == request_id:
                return request
        return None

    def add_latency_table(self, request_id: int, device_id: str, table: dict) -> None:
        with self.db:
            self.db.execute("INSERT INTO latency_tables (request_id, device_id, body, received_at) VALUES "
                            "(?, ?, ?, ?)", (int(request_id), device_id, json.dumps(table, sort_keys=True),
                                             time.time()))

    def latency_table_for(self, request_id: int) -> dict | None:
        """The table a device sent for request ``request_id`` last (by arrival), or None."""
        row = self.db.execute("SELECT body FROM latency_tables WHERE request_id = ? ORDER BY id DESC LIMIT 1",
                              (int(request_id),)).fetchone()
        return json.loads(row["body"]) if row else None

    def device_fps(self) -> dict[int, float]:
        """Per generation, the batch-1 benchmark fps (``benchmark-b1``) a device reported last (a stable figure
        before an unstable one): host-serve's /generations and summary.json call it ``device_fps``. Live
        figures are in :meth:`device_figures`, never here."""
        result = {}
        for generation, figures in self.device_figures().items():
            chosen = [f for f in figures if f["measurement"] == STEERING_MEASUREMENT]
            chosen.sort(key=lambda f: (f["stable"] is not False, f["report_id"]))  # by arrival: a clock set back
            # (NTP on a board without an RTC battery) must not make an older figure the latest
            if chosen:
                result[generation] = chosen[-1]["fps"]
        return result



def measurement_of(kind: str, stats: dict) -> str:
    """The kind of measurement a report's fps is, so that unlike figures are never compared or overwritten:
    ``benchmark-bN`` (device-bench/device-agent at batch N: the backend's throughput), ``live-paced`` (device-serve
    end to end on a source with its own clock: a camera, a stream, a video played in real time), ``live-unpaced``
    (end to end as fast as it goes: a folder, a video with --no-realtime), ``live`` (a device-serve that did not
    say), else the report's kind."""
    if kind == "benchmark":
        batch = stats.get("batch", 1)
        return f"benchmark-b{batch if isinstance(batch, int) and not isinstance(batch, bool) else 1}"
    if kind == "final":
        paced = stats.get("paced")
        return "live" if not isinstance(paced, bool) else ("live-paced" if paced else "live-unpaced")
    return kind
