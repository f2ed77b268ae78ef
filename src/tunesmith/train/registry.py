"""The run registry: one SQLite file per runs folder (``<train.output_dir>/registry.sqlite``).

Why in the runs folder and not under TUNESMITH_HOME: the registry describes the run folders beside it,
so it moves, backs up and gets deleted with them, and two projects with their own ``runs/`` never see
each other's runs. ``tunesmith runs list --dir`` points at any runs folder.

Schema changes are numbered migrations applied in order inside one transaction each; SQLite's
``PRAGMA user_version`` records how far a file has been migrated, so an older file is upgraded in place
the first time a newer tunesmith opens it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

REGISTRY_FILE = "registry.sqlite"

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
    status: str  # running | completed | stopped | failed
    created_at: float
    finished_at: float | None
    final_loss: float | None
    best_loss: float | None
    summary: dict[str, Any] | None


class RunRegistry:
    """Runs recorded in ``<runs_dir>/registry.sqlite`` (created and migrated on open)."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / REGISTRY_FILE

    def _connect(self) -> sqlite3.Connection:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise TunesmithError(
                f"The run registry {self.path} cannot be read: {exc}.",
                "Move the file aside; `tunesmith runs list` will start a fresh registry (run folders are untouched).",
            ) from exc
        return conn

    def add(self, run_id: str, run_dir: Path, method: str, finetune: str, base_model: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, run_dir, method, finetune, base_model, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status = 'running', run_dir = excluded.run_dir",
                (run_id, str(run_dir), method, finetune, base_model, time.time()),
            )

    def set_status(self, run_id: str, status: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def finish(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, final_loss = ?, best_loss = ?, summary_json = ?"
                " WHERE run_id = ?",
                (
                    status,
                    time.time(),
                    summary.get("final_train_loss"),
                    summary.get("best_val_loss"),
                    json.dumps(summary),
                    run_id,
                ),
            )

    def list(self) -> list[RunRecord]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY created_at").fetchall()
        return [_record(r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = ", ".join(r.run_id for r in self.list()[-5:]) or "none"
            raise TunesmithError(
                f"No run {run_id!r} in {self.path}.", f"Recent runs: {known}. See `tunesmith runs list`."
            )
        return _record(row)

    def remove(self, run_id: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))


_COLUMNS = "run_id, run_dir, method, finetune, base_model, status, created_at, finished_at, final_loss, best_loss, summary_json"


def _record(row: tuple) -> RunRecord:
    *head, summary = row
    return RunRecord(*head, summary=json.loads(summary) if summary else None)


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
