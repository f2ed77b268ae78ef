"""The server store: the SQLite store's tables in PostgreSQL + pgvector, selected by a ``postgresql://`` URL.

``tunesmith rag index DOCS --index postgresql://user@host/db`` (and query/ask/eval with the same URL) uses
this store; a folder keeps the embedded SQLite one. The indexer (rag/index.py) drives both through the same
methods, so the incremental rules are the same: an unchanged folder does no embedding work, an edit embeds
only chunk texts the index has not seen, files gone are deleted, and each batch is one transaction.

Choices (docs/rag.md, "Past one machine"):

- *Dense search on the server*: ``ORDER BY vector <=> q LIMIT n`` (pgvector's cosine distance) over an HNSW
  index (``vector_cosine_ops``). The server engine is for indexes that outgrow one process, where an exact
  scan reads every vector per query and HNSW reads a few thousand. On small tables PostgreSQL's planner
  chooses the exact scan by itself, so a small index ranks exactly like the SQLite store. ``hnsw.ef_search``
  is raised to the number of candidates asked for (pgvector's default of 40 would cut hybrid's 50 short);
  past pgvector's maximum of 1000 the index scan is turned off for that query, which makes it exact.
- *BM25 stays in-process* (rag/bm25.py, built from the texts fetched from the server the first time a
  process needs it), so lexical and hybrid rankings are identical to the SQLite store's. PostgreSQL's
  ``ts_rank_cd`` is not BM25 (no inverse document frequency, no term-frequency saturation), so switching
  the backend would have changed the results; the cost is one fetch of all chunk texts per process.
- *One index per database* (tables ``meta``, ``docs``, ``chunks``, ``failures``, as in SQLite): the URL
  names the index the way a folder does. One writer at a time (a PostgreSQL advisory lock); readers never
  block.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.errors import TunesmithError
from tunesmith.rag.bm25 import Bm25Index, build_bm25
from tunesmith.rag.retrieve import Index
from tunesmith.rag.store import SCHEMA_VERSION, DocState, StoredChunk

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5  # libpq waits forever by default; a URL's own connect_timeout wins
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
# ORDER BY inside, LIMIT right after it: the shape the HNSW index serves; then ties by id, as in SQLite
NEAREST_SQL = (
    "SELECT id, 1 - d FROM (SELECT id, vector <=> %s AS d FROM chunks ORDER BY vector <=> %s LIMIT %s) AS top "
    "ORDER BY d, id"
)
_WRITER_LOCK = 0x7475_6E65_7261_6700  # any fixed 64-bit key; advisory locks are per database
INSTALL_HINT = 'Install the PostgreSQL client: pip install "tunesmith[pgvector]" (psycopg 3).'

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS docs (
        source TEXT PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL, size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL, title TEXT NOT NULL, n_chunks INTEGER NOT NULL, settings TEXT NOT NULL)""",
    # The vector column gets its width (and the HNSW index) when the embedder is recorded: see set_meta.
    """CREATE TABLE IF NOT EXISTS chunks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, source TEXT NOT NULL, ord INTEGER NOT NULL,
        text TEXT NOT NULL, heading TEXT NOT NULL, location TEXT NOT NULL, hash TEXT NOT NULL,
        vector vector NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS failures (
        source TEXT PRIMARY KEY, path TEXT NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
        message TEXT NOT NULL, hint TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source)",
    "CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash)",
]


def is_server_url(index: Path | str) -> bool:
    """A ``postgresql://`` (or ``postgres://``) URL selects this store; anything else is an index folder."""
    return isinstance(index, str) and index.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    url = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


class PgStore:
    """Documents, chunks and vectors in a PostgreSQL database with pgvector; the interface of SqliteStore."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self.label = redact(url)
        self.conn = _connect(url, self.label)
        try:
            self._open(create)
        except BaseException:
            self.conn.close()
            raise

    def _open(self, create: bool) -> None:
        import psycopg

        if create:
            _ensure_vector_extension(self.conn, self.label)
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK + 1,))
                for statement in _SCHEMA:
                    self.conn.execute(statement)
        elif self.conn.execute("SELECT to_regclass('chunks')").fetchone()[0] is None:
            raise TunesmithError(
                f"No RAG index in the database at {self.label}.",
                f"Build it first: tunesmith rag index DOCS... --index '{self.label}'",
            )
        _register_vector(self.conn, self.label)
        try:
            version = self.meta("schema_version")
        except psycopg.Error as exc:
            raise TunesmithError(
                f"The database at {self.label} does not hold a readable tunesmith index ({exc}).",
                "Point --index at a database used only by tunesmith (createdb kb), or drop its tables.",
            ) from exc
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise TunesmithError(
                f"The index at {self.label} has format {version}; this tunesmith reads format {SCHEMA_VERSION}.",
                "Rebuild the index with `tunesmith rag index ... --rebuild`.",
            )

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=%s", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
            (key, value),
        )
        if key == "dim":
            # The indexer records the embedder's width before the first chunk (a new index, or one just
            # emptied by --rebuild), and HNSW needs a typed column: type it and index it now.
            self.conn.execute(f"ALTER TABLE chunks ALTER COLUMN vector TYPE vector({int(value)})")
            self.conn.execute(
                "CREATE INDEX IF NOT EXISTS chunks_vector_hnsw ON chunks USING hnsw (vector vector_cosine_ops)"
            )

    @property
    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside are committed together (and bump ``generation``) or not at all."""
        with self.conn.transaction():
            yield
            self.set_meta("generation", str(self.generation + 1))

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer per database at a time; a second `rag index` fails at once, as with a folder."""
        if not self.conn.execute("SELECT pg_try_advisory_lock(%s)", (_WRITER_LOCK,)).fetchone()[0]:
            raise TunesmithError(
                f"Another `tunesmith rag index` is writing {self.label} right now.",
                "Wait for it to finish, then run again (unchanged files will be skipped).",
            )
        try:
            yield
        finally:
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (_WRITER_LOCK,))

    def replace_doc(
        self, source: str, state: DocState, title: str, chunks: list, vectors: np.ndarray
    ) -> None:
        self.delete_doc(source)
        self.conn.execute(
            "INSERT INTO docs VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (source, state.path, state.content_hash, state.size, state.mtime_ns, _text(title), len(chunks),
             state.settings),
        )  # fmt: skip
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks(source, ord, text, heading, location, hash, vector) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (source, i, _text(c.text), _text(c.heading), c.location, c.hash,
                     np.asarray(v, dtype=np.float32))
                    for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))
                ],
            )  # fmt: skip

    def touch_doc(self, source: str, size: int, mtime_ns: int, path: str) -> None:
        self.conn.execute(
            "UPDATE docs SET size=%s, mtime_ns=%s, path=%s WHERE source=%s", (size, mtime_ns, path, source)
        )

    def record_failure(
        self, source: str, path: str, size: int, mtime_ns: int, message: str, hint: str
    ) -> None:
        """Remember a bad file, so an unchanged bad file is reported again without being re-read."""
        self.conn.execute(
            "INSERT INTO failures VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET "
            "path=EXCLUDED.path, size=EXCLUDED.size, mtime_ns=EXCLUDED.mtime_ns, message=EXCLUDED.message, "
            "hint=EXCLUDED.hint",
            (source, path, size, mtime_ns, _text(message), _text(hint)),
        )

    def failures(self) -> dict[str, tuple[str, int, int, str, str]]:
        rows = self.conn.execute("SELECT source, path, size, mtime_ns, message, hint FROM failures")
        return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]

    def delete_doc(self, source: str) -> None:
        self.conn.execute("DELETE FROM failures WHERE source=%s", (source,))
        self.conn.execute("DELETE FROM chunks WHERE source=%s", (source,))
        self.conn.execute("DELETE FROM docs WHERE source=%s", (source,))

    # ------------------------------------------------------------------ reads
    def docs(self) -> dict[str, DocState]:
        rows = self.conn.execute("SELECT source, content_hash, size, mtime_ns, path, settings FROM docs")
        return {r[0]: DocState(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        """Stored vectors of chunks with these texts (float32 bytes, as the SQLite store returns them)."""
        rows = self.conn.execute(
            "SELECT DISTINCT ON (hash) hash, vector FROM chunks WHERE hash = ANY(%s)",
            (list(dict.fromkeys(hashes)),),
            binary=True,
        )
        return {h: v.tobytes() for h, v in rows}

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(chunk ids, matrix n x dim)`` in id order."""
        rows = self.conn.execute("SELECT id, vector FROM chunks ORDER BY id", binary=True).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.stack([r[1] for r in rows]) if rows else np.zeros((0, dim), np.float32)
        return ids, matrix

    def all_texts(self) -> tuple[np.ndarray, list[str]]:
        rows = self.conn.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        rows = self.conn.execute(
            "SELECT id, source, text, heading, location FROM chunks WHERE id = ANY(%s)",
            ([int(x) for x in ids],),
        )
        return {r[0]: StoredChunk(*r) for r in rows}

    def nearest(self, query_vec: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The ``n`` chunks closest to ``query_vec`` as ``(id, cosine)``, best first, ties by id."""
        q = np.asarray(query_vec, dtype=np.float32)
        with self.conn.transaction():
            if n > EF_SEARCH_MAX:
                self.conn.execute("SET LOCAL enable_indexscan = off")
            else:
                self.conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(n, 40)),))
            # Not prepared: a cached generic plan would ignore enable_indexscan (measured: an "exact" search
            # then went through the HNSW index); planning costs well under a millisecond.
            rows = self.conn.execute(NEAREST_SQL, (q, q, n), prepare=False).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def similarities(self, query_vec: np.ndarray, ids: list[int]) -> dict[int, float]:
        q = np.asarray(query_vec, dtype=np.float32)
        rows = self.conn.execute(
            "SELECT id, 1 - (vector <=> %s) FROM chunks WHERE id = ANY(%s)", (q, [int(x) for x in ids])
        )
        return {int(i): float(s) for i, s in rows}

    def count(self) -> tuple[int, int]:
        n_docs = self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        n_chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return n_docs, n_chunks

    def close(self) -> None:
        self.conn.close()


class PgIndex(Index):
    """An opened server index: dense search and cosines run on the server, BM25 in this process."""

    store: PgStore

    @property
    def bm25(self) -> Bm25Index:
        if self._bm25 is None:
            self._bm25 = build_bm25(self.store)  # type: ignore[arg-type]
        return self._bm25

    def dense_search(self, query_vec: np.ndarray, n: int) -> list[tuple[int, float]]:
        return self.store.nearest(query_vec, n)

    def cosine(self, query: str, chunk_ids: list[int]) -> list[float]:
        sims = self.store.similarities(self.embedder.encode([query])[0], chunk_ids)
        return [sims[c] for c in chunk_ids]


def _connect(url: str, label: str) -> Any:
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise TunesmithError(
            f"The index {label} is a PostgreSQL database, and the psycopg package is not installed.",
            INSTALL_HINT,
        ) from None
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise TunesmithError(
            f"{label} is not a valid PostgreSQL URL ({exc}).",
            "Use postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
        ) from None
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    try:
        return psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        hint = "Check that the server is running and that host, port, user, password and database are right."
        if "does not exist" in reason and "database" in reason:
            hint = f"Create the database first (createdb {params.get('dbname', 'NAME')}), then index into it."
        raise TunesmithError(f"Cannot connect to PostgreSQL at {label}: {reason}", hint) from None


def _ensure_vector_extension(conn: Any, label: str) -> None:
    import psycopg

    if conn.execute("SELECT 1 FROM pg_extension WHERE extname='vector'").fetchone():
        return
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise TunesmithError(
            f"The pgvector extension is not enabled in the database at {label}, and this user may not enable it.",
            "Ask an administrator to run `CREATE EXTENSION vector;` in that database once.",
        ) from None
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported) as exc:
        raise TunesmithError(
            f"The PostgreSQL server at {label} has no pgvector extension ({' '.join(str(exc).split())}).",
            "Install pgvector on the server (Debian/Ubuntu with the PGDG repository: postgresql-NN-pgvector; "
            "most managed PostgreSQL offer it), or run a local server with pgserver (docs/rag.md).",
        ) from None


def _register_vector(conn: Any, label: str) -> None:
    """Send and read pgvector values in binary: float32 in, float32 out, no text round trip."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise TunesmithError(
            f"The database at {label} has tunesmith tables but no pgvector extension.",
            "Run `CREATE EXTENSION vector;` in that database, or rebuild the index.",
        )

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: Any) -> bytes:
            v = np.asarray(obj, dtype=">f4").ravel()
            return struct.pack(">HH", v.size, 0) + v.tobytes()

    class VectorLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            return np.frombuffer(bytes(data), dtype=">f4", offset=4).astype(np.float32)

    conn.adapters.register_dumper(np.ndarray, VectorDumper)
    conn.adapters.register_loader(info.oid, VectorLoader)


def _text(s: str) -> str:
    # PostgreSQL text cannot hold NUL (SQLite can); the loaders reject files with NULs near the start only.
    return s.replace("\x00", "\ufffd")
