"""The server's SQLite database: files, fine-tuning jobs, events, checkpoints, deleted models, request logs.

Design choices:
- One SQLite file in WAL mode shared by the API process and the worker processes; every connection is
  short-lived and per-thread (``connect``), so no connection crosses a fork.
- Schema changes are numbered migrations recorded in ``PRAGMA user_version``; a newer database than the
  code is refused with a clear error instead of being silently misread.
- Jobs are claimed with ``BEGIN IMMEDIATE`` + a conditional UPDATE, so two workers can never run the
  same job; a claimed job records ``worker_pid`` and a heartbeat so a restart can tell a dead claim from a
  live one.
- Ids are random hex with OpenAI's prefixes (``file-``, ``ftjob-``, ``ftevent-``, ``ftckpt-``); list
  order is ``seq`` (an autoincrement integer), so "newest first" and cursors are exact even when two
  rows share a second.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

MIGRATIONS: list[str] = [
    # 1: the core tables
    """
    CREATE TABLE files (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, filename TEXT NOT NULL,
        purpose TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL,
        status_details TEXT, task TEXT, n_examples INTEGER, deleted INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL,
        model TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT, status TEXT NOT NULL,
        method TEXT NOT NULL, hyperparameters TEXT NOT NULL, suffix TEXT, seed INTEGER NOT NULL,
        metadata TEXT, fine_tuned_model TEXT, finished_at INTEGER, trained_tokens INTEGER,
        error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, pause_requested INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0, worker_pid INTEGER, heartbeat_at REAL, run_dir TEXT,
        last_step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER, stop_requested_at REAL);
    CREATE INDEX jobs_status ON jobs(status);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL,
        created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, data TEXT, type TEXT NOT NULL);
    CREATE INDEX events_job ON events(job_id, seq);
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL,
        created_at INTEGER NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, metrics TEXT NOT NULL,
        model_name TEXT NOT NULL, UNIQUE(job_id, step));
    CREATE TABLE deleted_models (name TEXT PRIMARY KEY, deleted_at INTEGER NOT NULL);
    """,
    # 2: opt-in request/response logging (monitoring)
    """
    CREATE TABLE request_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, model TEXT NOT NULL,
        messages TEXT NOT NULL, response TEXT, corrected TEXT, latency_ms REAL NOT NULL,
        prompt_tokens INTEGER, completion_tokens INTEGER, status INTEGER NOT NULL, stream INTEGER NOT NULL);
    CREATE INDEX request_logs_model ON request_logs(model, created_at);
    """,
]

TERMINAL = ("succeeded", "failed", "cancelled")


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


@contextmanager
def transaction(path: Path, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """One transaction on the SQLite file ``path`` (rows as ``sqlite3.Row``): committed when the block ends,
    rolled back when it raises. ``immediate`` takes the write lock at the start (BEGIN IMMEDIATE)."""
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.row_factory = sqlite3.Row
    try:
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.close()


class Store:
    """Thin data access over the SQLite file; every method opens its own short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    # ------------------------------------------------------------------ plumbing

    def connect(self, immediate: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, immediate)

    def migrate(self) -> None:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                con.execute("ROLLBACK")
                raise TunesmithError(
                    f"{self.path} was written by a newer tunesmith (schema {version} > {len(MIGRATIONS)}).",
                    "Upgrade tunesmith, or point --data-dir at another folder.",
                )
            for n in range(version, len(MIGRATIONS)):
                for stmt in MIGRATIONS[n].split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version={n + 1}")
            con.execute("COMMIT")
        finally:
            con.close()

    def schema_version(self) -> int:
        with self.connect() as con:
            return con.execute("PRAGMA user_version").fetchone()[0]

    # ------------------------------------------------------------------ files

    def add_file(self, row: dict[str, Any]) -> None:
        cols = ",".join(row)
        with self.connect() as con:
            con.execute(f"INSERT INTO files({cols}) VALUES({','.join('?' * len(row))})", tuple(row.values()))

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM files WHERE id=? AND deleted=0", (file_id,)).fetchone()
        return dict(r) if r else None

    def update_file(self, file_id: str, **fields: Any) -> None:
        sets = ",".join(f"{k}=?" for k in fields)
        with self.connect() as con:
            con.execute(f"UPDATE files SET {sets} WHERE id=?", (*fields.values(), file_id))

    def list_files(
        self, purpose: str | None, order: str, after: str | None, limit: int
    ) -> tuple[list[dict], bool]:
        return self._page(
            "files",
            "deleted=0" + (" AND purpose=?" if purpose else ""),
            [purpose] if purpose else [],
            order,
            after,
            limit,
        )

    # ------------------------------------------------------------------ jobs

    def add_job(self, row: dict[str, Any], event: str) -> None:
        cols = ",".join(row)
        with self.connect() as con:
            con.execute(f"INSERT INTO jobs({cols}) VALUES({','.join('?' * len(row))})", tuple(row.values()))
            self._event(con, row["id"], event)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return dict(r) if r else None

    def list_jobs(
        self, after: str | None, limit: int, metadata: dict[str, str] | None = None
    ) -> tuple[list[dict], bool]:
        rows, _ = self._page("jobs", "1=1", [], "desc", after, 100_000 if metadata else limit)
        if metadata:
            rows = [
                r
                for r in rows
                if all((json.loads(r["metadata"] or "{}")).get(k) == v for k, v in metadata.items())
            ]
            return rows[:limit], len(rows) > limit
        return rows, _

    def update_job(self, job_id: str, event: str | None = None, level: str = "info", **fields: Any) -> None:
        with self.connect() as con:
            if fields:
                sets = ",".join(f"{k}=?" for k in fields)
                con.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))
            if event:
                self._event(con, job_id, event, level)

    def transition(
        self, job_id: str, from_states: tuple[str, ...], event: str | list[str] | None = None, **fields: Any
    ) -> bool:
        """Update a job only if its status is one of ``from_states``, with its events, in one transaction."""
        sets = ",".join(f"{k}=?" for k in fields)
        marks = ",".join("?" * len(from_states))
        with self.connect(immediate=True) as con:
            cur = con.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND status IN ({marks})",
                (*fields.values(), job_id, *from_states),
            )
            if cur.rowcount and event:
                for message in [event] if isinstance(event, str) else event:
                    self._event(con, job_id, message)
            return bool(cur.rowcount)

    def claim_job(self, pid: int) -> dict[str, Any] | None:
        """Atomically take the oldest queued job for worker ``pid``."""
        with self.connect(immediate=True) as con:
            r = con.execute("SELECT id FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1").fetchone()
            if r is None:
                return None
            con.execute(
                "UPDATE jobs SET status='running', worker_pid=?, heartbeat_at=?, attempt=attempt+1 WHERE id=? AND status='queued'",
                (pid, time.time(), r["id"]),
            )
            job = dict(con.execute("SELECT * FROM jobs WHERE id=?", (r["id"],)).fetchone())
            if job["attempt"] > 1:
                msg = f"Job restarted (attempt {job['attempt']}) from step {job['last_step']}"
            else:
                msg = "Fine-tuning job started"
            self._event(con, job["id"], msg)
            return job

    def heartbeat(self, job_id: str) -> dict[str, Any]:
        """Refresh the claim and return the flags the worker must obey (cancel/pause)."""
        with self.connect() as con:
            con.execute("UPDATE jobs SET heartbeat_at=? WHERE id=?", (time.time(), job_id))
            r = con.execute(
                "SELECT status, cancel_requested, pause_requested FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        return dict(r)

    def orphaned_jobs(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM jobs WHERE status='running'").fetchall()]

    def stopping_jobs(self) -> list[dict[str, Any]]:
        """Cancelled or paused jobs whose worker has not let go yet."""
        with self.connect() as con:
            q = "SELECT * FROM jobs WHERE status IN ('cancelled','paused') AND worker_pid IS NOT NULL"
            return [dict(r) for r in con.execute(q).fetchall()]

    # ------------------------------------------------------------------ events + checkpoints

    def add_event(
        self, job_id: str, message: str, level: str = "info", data: dict | None = None, type_: str = "message"
    ) -> None:
        with self.connect() as con:
            self._event(con, job_id, message, level, data, type_)

    def _event(
        self,
        con: sqlite3.Connection,
        job_id: str,
        message: str,
        level: str = "info",
        data: dict | None = None,
        type_: str = "message",
    ) -> None:
        con.execute(
            "INSERT INTO events(id, job_id, created_at, level, message, data, type) VALUES(?,?,?,?,?,?,?)",
            (
                new_id("ftevent-"),
                job_id,
                int(time.time()),
                level,
                message,
                json.dumps(data) if data is not None else None,
                type_,
            ),
        )

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return self._page("events", "job_id=?", [job_id], "desc", after, limit)

    def metrics_series(self, job_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT data FROM events WHERE job_id=? AND type='metrics' ORDER BY seq", (job_id,)
            ).fetchall()
        return [json.loads(r["data"]) for r in rows]

    def add_checkpoint(self, job_id: str, step: int, path: str, metrics: dict, model_name: str) -> bool:
        """Record a published checkpoint and its event in one transaction; False if the step is known."""
        with self.connect() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO checkpoints(id, job_id, created_at, step, path, metrics, model_name) VALUES(?,?,?,?,?,?,?)",
                (new_id("ftckpt-"), job_id, int(time.time()), step, path, json.dumps(metrics), model_name),
            )
            if cur.rowcount:
                self._event(con, job_id, f"Checkpoint saved at step {step}", data={"step": step})
                con.execute("UPDATE jobs SET last_step=MAX(last_step, ?) WHERE id=?", (step, job_id))
            return bool(cur.rowcount)

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return self._page("checkpoints", "job_id=?", [job_id], "desc", after, limit)

    def checkpoint_by_model(self, name: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM checkpoints WHERE model_name=?", (name,)).fetchone()
        return dict(r) if r else None

    def all_checkpoints(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM checkpoints ORDER BY seq").fetchall()]

    # ------------------------------------------------------------------ models

    def finished_models(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT * FROM jobs WHERE fine_tuned_model IS NOT NULL ORDER BY seq"
            ).fetchall()
        return [dict(r) for r in rows]

    def job_by_model(self, name: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM jobs WHERE fine_tuned_model=?", (name,)).fetchone()
        return dict(r) if r else None

    def delete_model(self, name: str) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO deleted_models(name, deleted_at) VALUES(?,?)",
                (name, int(time.time())),
            )

    def deleted_models(self) -> set[str]:
        with self.connect() as con:
            return {r["name"] for r in con.execute("SELECT name FROM deleted_models").fetchall()}

    # ------------------------------------------------------------------ request logs

    def log_request(self, row: dict[str, Any]) -> None:
        cols = ",".join(row)
        with self.connect() as con:
            con.execute(
                f"INSERT INTO request_logs({cols}) VALUES({','.join('?' * len(row))})", tuple(row.values())
            )

    def request_logs(self, model: str | None = None) -> list[dict[str, Any]]:
        with self.connect() as con:
            q = "SELECT * FROM request_logs" + (" WHERE model=?" if model else "") + " ORDER BY id"
            return [dict(r) for r in con.execute(q, (model,) if model else ()).fetchall()]

    def correct_log(self, log_id: int, corrected: str) -> bool:
        with self.connect() as con:
            return bool(
                con.execute("UPDATE request_logs SET corrected=? WHERE id=?", (corrected, log_id)).rowcount
            )

    # ------------------------------------------------------------------ paging

    def _page(
        self, table: str, where: str, args: list, order: str, after: str | None, limit: int
    ) -> tuple[list[dict], bool]:
        """Cursor pagination by ``seq``: ``after`` is the id of the last item of the previous page."""
        direction, cmp = ("DESC", "<") if order == "desc" else ("ASC", ">")
        q, params = f"SELECT * FROM {table} WHERE {where}", list(args)
        with self.connect() as con:
            if after:
                r = con.execute(f"SELECT seq FROM {table} WHERE id=?", (after,)).fetchone()
                if r is None:
                    return [], False
                q += f" AND seq {cmp} ?"
                params.append(r["seq"])
            q += f" ORDER BY seq {direction} LIMIT ?"
            params.append(limit + 1)
            rows = [dict(r) for r in con.execute(q, params).fetchall()]
        return rows[:limit], len(rows) > limit
