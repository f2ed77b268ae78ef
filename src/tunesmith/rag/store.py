"""The embedded, persistent store: one SQLite file (documents, chunks, vectors) plus a BM25 side index.

Why SQLite + exact numpy search (see docs/rag.md): transactions make every update all-or-nothing (a crash
mid-index leaves the previous state, never a half-written index); it needs no server and no extension (this
Python's sqlite3 is built without extension loading, so sqlite-vec would need a second SQLite driver, and
its vec0 table is a brute-force scan as well); and an exact scan of 10,000 x 384 float32 vectors is a
~1 ms matrix-vector product. Past ~1M chunks, use the server backend (pgvector, rag/pgstore.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith.errors import TunesmithError

SCHEMA_VERSION = "1"
DB_NAME = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    source TEXT PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, title TEXT NOT NULL, n_chunks INTEGER NOT NULL, settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ord INTEGER NOT NULL, text TEXT NOT NULL,
    heading TEXT NOT NULL, location TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    source TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    message TEXT NOT NULL, hint TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash);
"""


@dataclass(frozen=True)
class DocState:
    content_hash: str
    size: int
    mtime_ns: int
    path: str
    settings: str


@dataclass(frozen=True)
class StoredChunk:
    id: int
    source: str
    text: str
    heading: str
    location: str


class SqliteStore:
    """Documents, chunks and their vectors in ``DIR/index.sqlite``; ``generation`` counts committed changes."""

    def __init__(self, index_dir: Path, *, create: bool = False) -> None:
        self.dir = Path(index_dir)
        db = self.dir / DB_NAME
        if not db.exists():
            if not create:
                hint = "Build it first: tunesmith rag index DOCS... --index " + str(self.dir)
                if self.dir.exists() and any(self.dir.iterdir()):
                    hint = f"{self.dir} exists but holds no {DB_NAME}: pass the folder given to `rag index --index`."
                raise TunesmithError(f"No RAG index at {self.dir}.", hint)
            self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise TunesmithError(
                f"{db} is not a readable tunesmith index ({exc}).",
                f"Delete {self.dir} and rebuild it with `tunesmith rag index ... --index {self.dir}`.",
            ) from exc
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise TunesmithError(
                f"{db} has index format {version}; this tunesmith reads format {SCHEMA_VERSION}.",
                "Rebuild the index with `tunesmith rag index ... --rebuild`.",
            )

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside are committed together (and bump ``generation``) or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.set_meta("generation", str(self.generation + 1))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def replace_doc(
        self, source: str, state: DocState, title: str, chunks: list, vectors: np.ndarray
    ) -> None:
        self.delete_doc(source)
        self.conn.execute(
            "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                source,
                state.path,
                state.content_hash,
                state.size,
                state.mtime_ns,
                title,
                len(chunks),
                state.settings,
            ),
        )
        self.conn.executemany(
            "INSERT INTO chunks(source, ord, text, heading, location, hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    source,
                    i,
                    c.text,
                    c.heading,
                    c.location,
                    c.hash,
                    np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                )
                for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))
            ],
        )

    def touch_doc(self, source: str, size: int, mtime_ns: int, path: str) -> None:
        self.conn.execute(
            "UPDATE docs SET size=?, mtime_ns=?, path=? WHERE source=?", (size, mtime_ns, path, source)
        )

    def record_failure(
        self, source: str, path: str, size: int, mtime_ns: int, message: str, hint: str
    ) -> None:
        """Remember a bad file, so an unchanged bad file is reported again without being re-read."""
        self.conn.execute(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
            (source, path, size, mtime_ns, message, hint),
        )

    def failures(self) -> dict[str, tuple[str, int, int, str, str]]:
        rows = self.conn.execute("SELECT source, path, size, mtime_ns, message, hint FROM failures")
        return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]

    def delete_doc(self, source: str) -> None:
        self.conn.execute("DELETE FROM failures WHERE source=?", (source,))
        self.conn.execute("DELETE FROM chunks WHERE source=?", (source,))
        self.conn.execute("DELETE FROM docs WHERE source=?", (source,))

    # ------------------------------------------------------------------ reads
    def docs(self) -> dict[str, DocState]:
        rows = self.conn.execute("SELECT source, content_hash, size, mtime_ns, path, settings FROM docs")
        return {r[0]: DocState(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        """Stored vectors of chunks with these texts: an edited document re-embeds only its changed chunks."""
        out: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            for h, v in self.conn.execute(
                f"SELECT hash, MIN(vector) FROM chunks WHERE hash IN ({marks}) GROUP BY hash", part
            ):
                out[h] = v
        return out

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(chunk ids, matrix n x dim)`` in id order."""
        rows = self.conn.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = (
            np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            if rows
            else np.zeros((0, dim), np.float32)
        )
        return ids, matrix

    def all_texts(self) -> tuple[np.ndarray, list[str]]:
        rows = self.conn.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        out: dict[int, StoredChunk] = {}
        for i in range(0, len(ids), 500):
            part = [int(x) for x in ids[i : i + 500]]
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                f"SELECT id, source, text, heading, location FROM chunks WHERE id IN ({marks})", part
            ):
                out[r[0]] = StoredChunk(*r)
        return out

    def count(self) -> tuple[int, int]:
        n_docs = self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        n_chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return n_docs, n_chunks

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer per index at a time; a second `rag index` on the same folder fails at once, clearly."""
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(index_dir) / ".write.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TunesmithError(
                f"Another `tunesmith rag index` is writing {index_dir} right now.",
                "Wait for it to finish, then run again (unchanged files will be skipped).",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
