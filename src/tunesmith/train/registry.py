"""The run registry: one SQLite file per runs folder (``<train.output_dir>/registry.sqlite``).

Why in the runs folder and not under TUNESMITH_HOME: the registry describes the run folders beside it,
so it moves, backs up and gets deleted with them, and two projects with their own ``runs/`` never see
each other's runs. ``tunesmith runs list --dir`` points at any runs folder.

Schema changes are numbered migrations applied in order inside one transaction each; SQLite's
``PRAGMA user_version`` records how far a file has been migrated, so an older file is upgraded in place
the first time a newer tunesmith opens it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.results.run import RunSummary, run_summary_from_dict

REGISTRY_FILE = "registry.sqlite"
PID_FILE = "run.pid"  # "<pid> <host>" of the process training the run, written when the run is recorded

MIGRATIONS: list[str] = [
    # 1: the runs table
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        run_dir TEXT NOT NULL,
        method TEXT NOT NULL,
        finetune TEXT NOT NULL,
        base_model TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        final_loss REAL,
        best_loss REAL
    );
    """,
    # 2: keep the whole summary (for `runs show`) and order listings by time cheaply
    """
    ALTER TABLE runs ADD COLUMN summary_json TEXT;
    CREATE INDEX runs_created ON runs(created_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    run_dir: str
    method: str
    finetune: str
    base_model: str
    status: str  # running | completed | stopped | failed (as recorded; shown_status adds interrupted)
    created_at: float
    finished_at: float | None
    final_loss: float | None  # the summary's final_train_loss
    best_loss: float | None  # the summary's best_val_loss (best hold-out loss)
    summary: RunSummary | None


class RunRegistry:
    """Runs recorded in ``<runs_dir>/registry.sqlite`` (created and migrated on open)."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / REGISTRY_FILE

    def _connect(self) -> sqlite3.Connection:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.text_factory = _lenient_text  # a garbled text cell reads with U+FFFD, not an exception
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise TunesmithError(
                f"The run registry {self.path} cannot be read: {exc}.",
                "Move the file aside; `tunesmith runs list` will start a fresh registry (run folders are untouched).",
            ) from exc
        return conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction, closed after it; a damaged file (torn pages, garbage) is one
        clear error naming it, never a traceback."""
        conn = self._connect()
        try:
            with conn:
                yield conn
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # (SQLite's message may not be UTF-8)
            raise TunesmithError(
                f"The run registry {self.path} is damaged: {exc}.",
                "Move the file aside; the next `tunesmith runs list` or training run starts a fresh registry "
                "(run folders are untouched).",
            ) from None
        finally:
            conn.close()

    def add(self, run_id: str, run_dir: Path, method: str, finetune: str, base_model: str) -> None:
        """Record a run as ``running`` and note this process in ``<run_dir>/run.pid``, so that a run whose
        process died without finishing (killed by the OS, power loss) can be shown as ``interrupted``."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / PID_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")
        with self._db() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, run_dir, method, finetune, base_model, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status = 'running', run_dir = excluded.run_dir",
                (run_id, str(run_dir), method, finetune, base_model, time.time()),
            )

    def set_status(self, run_id: str, status: str) -> None:
        with self._db() as conn:
            conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def finish(self, run_id: str, status: str, summary: RunSummary) -> None:
        with self._db() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, final_loss = ?, best_loss = ?, summary_json = ?"
                " WHERE run_id = ?",
                (
                    status,
                    time.time(),
                    summary.final_train_loss,
                    summary.best_val_loss,
                    summary.model_dump_json(),
                    run_id,
                ),
            )

    def list(self) -> list[RunRecord]:
        with self._db() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY created_at").fetchall()
        return [_record(r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        with self._db() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = ", ".join(r.run_id for r in self.list()[-5:]) or "none"
            raise TunesmithError(
                f"No run {run_id!r} in {self.path}.", f"Recent runs: {known}. See `tunesmith runs list`."
            )
        return _record(row)

    def remove(self, run_id: str) -> None:
        with self._db() as conn:
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))


def shown_status(rec: RunRecord) -> str:
    """The status to show: ``interrupted`` for a run recorded as ``running`` whose process (from
    ``run.pid``, on this host) no longer exists; otherwise the recorded status. A run without a readable pid
    file, or trained on another host, is shown as recorded (its process cannot be checked from here)."""
    if rec.status != "running":
        return rec.status
    try:
        pid_text, host = (Path(rec.run_dir) / PID_FILE).read_text(encoding="utf-8").split()
        pid = int(pid_text)
    except (OSError, ValueError, UnicodeDecodeError):
        return rec.status
    if host != socket.gethostname() or pid <= 0:
        return rec.status
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return "interrupted"
    except (PermissionError, OverflowError):  # exists, owned by someone else; or a garbled number
        return rec.status
    return rec.status


_COLUMNS = "run_id, run_dir, method, finetune, base_model, status, created_at, finished_at, final_loss, best_loss, summary_json"


def _record(row: tuple) -> RunRecord:
    """A registry row; a summary stored by an older tunesmith (dpo/reward put their final loss under
    ``train_loss_last``, so the final_loss column stayed empty) is read into the current shape and fills
    the loss columns the row lacks."""
    row = _coerce(row)
    *head, summary_json = row
    summary = None
    if summary_json:
        run_id, method = head[0], head[2]
        try:
            summary = run_summary_from_dict(
                json.loads(summary_json), source=f"registry record {run_id}", run_id=run_id, method=method
            )
        except (TunesmithError, json.JSONDecodeError):
            summary = None  # one damaged record must not hide the others; `runs show` reads summary.json
    rec = RunRecord(*head, summary=summary)
    if summary is not None and rec.final_loss is None and summary.final_train_loss is not None:
        rec = dataclasses.replace(rec, final_loss=summary.final_train_loss)
    if summary is not None and rec.best_loss is None and summary.best_val_loss is not None:
        rec = dataclasses.replace(rec, best_loss=summary.best_val_loss)
    return rec


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


_TEXT_COLUMNS = 6  # run_id .. status; then created_at, finished_at, final_loss, best_loss, summary_json


def _coerce(row: tuple) -> tuple:
    """A row with the types RunRecord promises, whatever a damaged file holds (a number where text
    belongs, text where a number does): text as str, times and losses as float or None."""
    text = tuple(
        (v if isinstance(v, str) else "" if v is None else str(v)).replace("\x00", "")
        for v in row[:_TEXT_COLUMNS]
    )
    created, finished, final, best, summary = row[_TEXT_COLUMNS:]
    return (
        *text,
        _time(created) or 0.0,
        _time(finished),
        _float(final),
        _float(best),
        summary if isinstance(summary, str) else None,
    )


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _time(v: object) -> float | None:
    t = _float(v)
    return t if t is not None and 0 <= t < 1e11 else None  # a Unix time ``time.localtime`` can show


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to ``SCHEMA_VERSION``; returns the version it started at. Refuses a newer file."""
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    if start > SCHEMA_VERSION:
        raise TunesmithError(
            f"The run registry was written by a newer tunesmith (schema {start}, this one knows {SCHEMA_VERSION}).",
            "Upgrade tunesmith.",
        )
    for version in range(start, SCHEMA_VERSION):
        conn.executescript("BEGIN;" + MIGRATIONS[version] + f"PRAGMA user_version = {version + 1}; COMMIT;")
    return start
