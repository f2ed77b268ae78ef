"""The workbench's tables in the server's SQLite file: aliases and their audit log, background tasks
(evaluations, answer scoring), review items (corrections and preference pairs) and scores of logged answers.

Design choices:
- **Its own migration track.** The core schema (``serve.store``) counts its migrations in
  ``PRAGMA user_version``; the workbench's tables are numbered in a table of their own
  (``workbench_schema``), so the two can grow independently without renumbering each other's migrations.
  A database from a newer workbench is refused, like the core's.
- **Aliases are rows, their history is an append-only log.** Moving or rolling back an alias writes the
  new row and one ``alias_events`` row (who, when, from, to, the evaluation and gate verdict, the override
  reason) in one transaction, so the audit log can never disagree with the alias.
- **Review items are versioned**: every save is a new row (``seq``); a row saved again for the same log and
  kind supersedes the older one (kept, flagged). An export names the ``seq`` it goes up to, so a training set
  built from reviewed rows can be rebuilt exactly later (``upto``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.serve.store import new_id, transaction

MIGRATIONS: list[str] = [
    """
    CREATE TABLE aliases (
        name TEXT PRIMARY KEY, model TEXT NOT NULL, updated_at REAL NOT NULL, actor TEXT NOT NULL);
    CREATE TABLE alias_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT NOT NULL, action TEXT NOT NULL,
        model TEXT NOT NULL, previous TEXT, actor TEXT NOT NULL, at REAL NOT NULL,
        evaluation_id TEXT, gate_passed INTEGER, override_reason TEXT);
    CREATE INDEX alias_events_alias ON alias_events(alias, seq);
    CREATE TABLE wb_tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
        params TEXT NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT, created_at REAL NOT NULL,
        finished_at REAL, actor TEXT NOT NULL);
    CREATE TABLE review_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, log_id INTEGER NOT NULL, kind TEXT NOT NULL,
        row TEXT NOT NULL, pii TEXT NOT NULL, actor TEXT NOT NULL, created_at REAL NOT NULL,
        superseded INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX review_items_log ON review_items(log_id, kind);
    CREATE TABLE log_scores (
        log_id INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY(log_id, name));
    """,
]


class WorkbenchStore:
    """Data access for the workbench's tables (see the module docstring); one short transaction per call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.migrate()

    def connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the server's database (``serve.store.transaction``)."""
        return transaction(self.path, immediate=True)

    def migrate(self) -> None:
        """Apply the workbench migrations not yet applied.

        Raises:
            TunesmithError: when the database was written by a newer workbench.
        """
        with self.connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS workbench_schema (version INTEGER NOT NULL)")
            row = con.execute("SELECT version FROM workbench_schema").fetchone()
            version = row["version"] if row else 0
            if row is None:
                con.execute("INSERT INTO workbench_schema(version) VALUES(0)")
            if version > len(MIGRATIONS):
                raise TunesmithError(
                    f"{self.path} holds workbench schema {version}, newer than this tunesmith's {len(MIGRATIONS)}.",
                    "Upgrade tunesmith, or point --data-dir at another folder.",
                )
            for n in range(version, len(MIGRATIONS)):
                for stmt in MIGRATIONS[n].split(";"):
                    if stmt.strip():
                        con.execute(stmt)
            con.execute("UPDATE workbench_schema SET version=?", (len(MIGRATIONS),))

    # ------------------------------------------------------------------ aliases

    def aliases(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM aliases ORDER BY name").fetchall()]

    def alias(self, name: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM aliases WHERE name=?", (name,)).fetchone()
        return dict(r) if r else None

    def move_alias(self, name: str, model: str, actor: str, action: str, **audit: Any) -> dict[str, Any]:
        """Point ``name`` at ``model`` and append the audit row, in one transaction; the audit row."""
        now = time.time()
        with self.connect() as con:
            r = con.execute("SELECT model FROM aliases WHERE name=?", (name,)).fetchone()
            previous = r["model"] if r else None
            con.execute(
                "INSERT OR REPLACE INTO aliases(name, model, updated_at, actor) VALUES(?,?,?,?)",
                (name, model, now, actor),
            )
            cur = con.execute(
                "INSERT INTO alias_events(alias, action, model, previous, actor, at, evaluation_id, gate_passed,"
                " override_reason) VALUES(?,?,?,?,?,?,?,?,?)",
                (
                    name,
                    action,
                    model,
                    previous,
                    actor,
                    now,
                    audit.get("evaluation_id"),
                    audit.get("gate_passed"),
                    audit.get("override_reason"),
                ),
            )
            return dict(con.execute("SELECT * FROM alias_events WHERE seq=?", (cur.lastrowid,)).fetchone())

    def alias_history(self, name: str | None = None) -> list[dict[str, Any]]:
        """Audit rows, newest first (every alias when ``name`` is None)."""
        q = "SELECT * FROM alias_events" + (" WHERE alias=?" if name else "") + " ORDER BY seq DESC"
        with self.connect() as con:
            return [dict(r) for r in con.execute(q, (name,) if name else ()).fetchall()]

    def alias_at(self, name: str, at: float) -> str | None:
        """The model ``name`` pointed at, at time ``at`` (seconds since the epoch), from the audit log."""
        with self.connect() as con:
            r = con.execute(
                "SELECT model FROM alias_events WHERE alias=? AND at<=? ORDER BY seq DESC LIMIT 1", (name, at)
            ).fetchone()
        return r["model"] if r else None

    # ------------------------------------------------------------------ tasks

    def add_task(self, kind: str, params: dict[str, Any], actor: str) -> dict[str, Any]:
        tid = new_id("wbtask-")
        with self.connect() as con:
            con.execute(
                "INSERT INTO wb_tasks(id, kind, params, status, created_at, actor) VALUES(?,?,?,?,?,?)",
                (tid, kind, json.dumps(params), "queued", time.time(), actor),
            )
        return self.task(tid) or {}

    def task(self, task_id: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM wb_tasks WHERE id=?", (task_id,)).fetchone()
        return _task(dict(r)) if r else None

    def tasks(self, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = "SELECT * FROM wb_tasks" + (" WHERE kind=?" if kind else "") + " ORDER BY seq DESC LIMIT ?"
        with self.connect() as con:
            rows = con.execute(q, (kind, limit) if kind else (limit,)).fetchall()
        return [_task(dict(r)) for r in rows]

    def finish_task(
        self, task_id: str, status: str, result: dict | None = None, error: str | None = None
    ) -> None:
        with self.connect() as con:
            con.execute(
                "UPDATE wb_tasks SET status=?, result=?, error=?, finished_at=? WHERE id=?",
                (status, json.dumps(result) if result is not None else None, error, time.time(), task_id),
            )

    def set_task_status(self, task_id: str, status: str) -> None:
        with self.connect() as con:
            con.execute("UPDATE wb_tasks SET status=? WHERE id=?", (status, task_id))

    def abandon_running_tasks(self) -> int:
        """Tasks left queued/running by a server that stopped: failed, with the reason (at start-up)."""
        with self.connect() as con:
            return con.execute(
                "UPDATE wb_tasks SET status='failed', error=?, finished_at=? WHERE status IN ('queued','running')",
                ("The server stopped before the task finished; start it again.", time.time()),
            ).rowcount

    # ------------------------------------------------------------------ review items + scores

    def add_review_item(
        self, log_id: int, kind: str, row: dict[str, Any], pii: list[str], actor: str
    ) -> dict[str, Any]:
        """Save a reviewed row (a new version; an older one for the same log and kind is superseded)."""
        with self.connect() as con:
            con.execute(
                "UPDATE review_items SET superseded=1 WHERE log_id=? AND kind=? AND superseded=0",
                (log_id, kind),
            )
            cur = con.execute(
                "INSERT INTO review_items(log_id, kind, row, pii, actor, created_at) VALUES(?,?,?,?,?,?)",
                (log_id, kind, json.dumps(row, ensure_ascii=False), json.dumps(pii), actor, time.time()),
            )
            r = con.execute("SELECT * FROM review_items WHERE seq=?", (cur.lastrowid,)).fetchone()
        return _item(dict(r))

    def review_items(
        self, kind: str | None = None, upto: int | None = None, current_only: bool = True
    ) -> list[dict[str, Any]]:
        """Reviewed rows in save order. ``upto``: only rows saved at or before that version (``seq``), as
        they stood then (a row superseded later still counts)."""
        where, args = ["1=1"], []
        if kind:
            where.append("kind=?")
            args.append(kind)
        if upto is not None:
            where.append("seq<=?")
            args.append(upto)
        with self.connect() as con:
            rows = [
                _item(dict(r))
                for r in con.execute(
                    f"SELECT * FROM review_items WHERE {' AND '.join(where)} ORDER BY seq", args
                ).fetchall()
            ]
        if current_only:  # the newest version per (log, kind) within the window
            newest = {(r["log_id"], r["kind"]): r["seq"] for r in rows}
            rows = [r for r in rows if newest[(r["log_id"], r["kind"])] == r["seq"]]
        return rows

    def review_version(self) -> int:
        with self.connect() as con:
            return int(con.execute("SELECT COALESCE(MAX(seq), 0) FROM review_items").fetchone()[0])

    def set_score(self, log_id: int, name: str, value: float) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO log_scores(log_id, name, value, created_at) VALUES(?,?,?,?)",
                (log_id, name, value, time.time()),
            )

    def scores(self) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        with self.connect() as con:
            for r in con.execute("SELECT log_id, name, value FROM log_scores").fetchall():
                out.setdefault(r["log_id"], {})[r["name"]] = r["value"]
        return out


def _task(r: dict[str, Any]) -> dict[str, Any]:
    r["params"] = json.loads(r["params"])
    r["result"] = json.loads(r["result"]) if r["result"] else None
    return r


def _item(r: dict[str, Any]) -> dict[str, Any]:
    r["row"] = json.loads(r["row"])
    r["pii"] = json.loads(r["pii"])
    r["superseded"] = bool(r["superseded"])
    return r
