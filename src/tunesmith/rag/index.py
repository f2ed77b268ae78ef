"""Build and update an index incrementally: ``index_documents(paths, index_dir)``.

Work is keyed by content: a file whose size and mtime are unchanged is not even read; a file that was
touched but has the same SHA-256 is not re-chunked; a changed file is re-chunked, and only chunks whose text
is new are embedded (the others reuse their stored vectors); files gone from an indexed folder are deleted.
Files are written in batches, each one SQLite transaction, so a crash or Ctrl-C loses at most the batch in
flight and never leaves a half-indexed file. A bad file is reported (name, problem, fix) and skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunesmith.errors import TunesmithError
from tunesmith.progress import step
from tunesmith.rag.bm25 import save_bm25
from tunesmith.rag.chunk import Chunk, chunk_sections
from tunesmith.rag.embed import DEFAULT_EMBEDDER, Embedder, get_embedder
from tunesmith.rag.loaders import LoadIssue, iter_document_files, load_document
from tunesmith.rag.pgstore import PgStore, is_server_url
from tunesmith.rag.store import DocState, SqliteStore, writer_lock

FLUSH_CHUNKS = 256  # chunks embedded and committed together
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class IndexReport:
    files_seen: int
    added: int
    updated: int
    unchanged: int
    deleted: int
    files_read: int
    chunks_embedded: int
    chunks_reused: int
    n_docs: int
    n_chunks: int
    seconds: float
    failed: list[LoadIssue] = field(default_factory=list)
    warnings: list[LoadIssue] = field(default_factory=list)


@dataclass
class _Pending:
    source: str
    state: DocState
    title: str
    chunks: list[Chunk]
    is_new: bool


def index_documents(
    paths: list[Path],
    index_dir: Path | str,
    *,
    embedder: Embedder | str = DEFAULT_EMBEDDER,
    chunk_tokens: int = 256,
    chunk_overlap: int = 32,
    rebuild: bool = False,
    progress: ProgressFn | None = None,
) -> IndexReport:
    """Index (or update) ``index_dir`` (a folder, or a ``postgresql://`` URL) from the files and folders in
    ``paths``."""
    started = time.perf_counter()
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise TunesmithError(f"{p} does not exist.", "Pass existing document files or folders.")
    emb = get_embedder(embedder) if isinstance(embedder, str) else embedder
    server = is_server_url(index_dir)  # BM25 of a server index is built by its readers (rag/pgstore.py)
    index_dir = index_dir if server else Path(index_dir)
    with _open_writer(index_dir) as store:
        if rebuild:
            _clear(store)
        _check_embedder(store, emb, index_dir)
        settings = json.dumps({"chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap})
        run = _Run(store, emb, settings, chunk_tokens, chunk_overlap)
        files = list(iter_document_files(paths))
        # the one progress helper (tunesmith.progress): files read, chunked and embedded, with an ETA
        with step("indexing documents", len(files)) as shown:
            for i, (f, source) in enumerate(files, start=1):
                run.visit(f, source)
                shown.advance()
                if progress:
                    progress(i, len(files), source)
            run.flush()
        run.delete_missing(paths)
        n_docs, n_chunks = store.count()
        if not server and (run.changed or not (index_dir / "bm25").exists()):
            save_bm25(store, index_dir)
    return IndexReport(
        files_seen=len(files), added=run.added, updated=run.updated, unchanged=run.unchanged, deleted=run.deleted,
        files_read=run.files_read, chunks_embedded=run.embedded, chunks_reused=run.reused, n_docs=n_docs,
        n_chunks=n_chunks, seconds=time.perf_counter() - started, failed=run.failed, warnings=run.warnings,
    )  # fmt: skip


@contextlib.contextmanager
def _open_writer(index: Path | str) -> Iterator[SqliteStore]:
    """The index's store, held by its one writer: the folder's lock file, or the database's advisory lock."""
    if isinstance(index, str):
        server = PgStore(index, create=True)
        try:
            with server.writer_lock():
                yield server  # type: ignore[misc]
        finally:
            server.close()
        return
    with writer_lock(index):
        store = SqliteStore(index, create=True)
        try:
            yield store
        finally:
            store.close()


def _check_embedder(store: SqliteStore, emb: Embedder, index_dir: Path | str) -> None:
    built_with = store.meta("embedder_id")
    if built_with is None:
        store.set_meta("embedder_id", emb.id)
        store.set_meta("embedder_name", emb.name)
        store.set_meta("dim", str(emb.dim))
    elif built_with != emb.id:
        raise TunesmithError(
            f"The index at {index_dir} was built with embedder {built_with!r}; this run uses {emb.id!r}. "
            "Vectors from different embedders cannot be mixed; the index was left unchanged.",
            f"Use the same embedder (--embedder {store.meta('embedder_name')}), or rebuild with --rebuild.",
        )


def _clear(store: SqliteStore) -> None:
    with store.transaction():
        store.conn.execute("DELETE FROM chunks")
        store.conn.execute("DELETE FROM docs")
        store.conn.execute("DELETE FROM meta WHERE key LIKE 'embedder%' OR key='dim'")


class _Run:
    """One indexing pass: decides per file what work is needed and batches the writes."""

    def __init__(
        self, store: SqliteStore, emb: Embedder, settings: str, chunk_tokens: int, overlap: int
    ) -> None:
        self.store, self.emb, self.settings = store, emb, settings
        self.chunk_tokens, self.overlap = chunk_tokens, overlap
        self.known = store.docs()
        self.known_bad = store.failures()
        self.seen: dict[str, str] = {}
        self.pending: list[_Pending] = []
        self.n_pending = 0
        self.failed: list[LoadIssue] = []
        self.warnings: list[LoadIssue] = []
        self.added = self.updated = self.unchanged = self.deleted = 0
        self.files_read = self.embedded = self.reused = 0
        self.changed = False

    def visit(self, f: Path, source: str) -> None:
        real = str(f.resolve())
        if source in self.seen and self.seen[source] != real:
            self.failed.append(
                LoadIssue(
                    source,
                    f"{real} has the same name as {self.seen[source]} ({source}).",
                    "Rename one, or index the folders into separate indexes.",
                )
            )
            return
        self.seen[source] = real
        try:
            st = f.stat()
            old = self.known.get(source)
            if (
                old
                and old.size == st.st_size
                and old.mtime_ns == st.st_mtime_ns
                and old.settings == self.settings
                and old.path == real
            ):
                self.unchanged += 1
                return
            bad = self.known_bad.get(source)
            if bad and bad[:3] == (real, st.st_size, st.st_mtime_ns):
                self.failed.append(
                    LoadIssue(source, bad[3], bad[4])
                )  # same bad file: same message, no re-read
                return
            raw = f.read_bytes()
        except OSError as exc:
            self.failed.append(
                LoadIssue(
                    source,
                    f"{source} cannot be read ({exc.strerror or exc}).",
                    "Check its permissions; it was skipped.",
                )
            )
            return
        self.files_read += 1
        digest = hashlib.sha256(raw).hexdigest()
        state = DocState(digest, st.st_size, st.st_mtime_ns, real, self.settings)
        if old and old.content_hash == digest and old.settings == self.settings:
            with self.store.transaction():
                self.store.touch_doc(source, st.st_size, st.st_mtime_ns, real)
            self.unchanged += 1
            return
        doc = load_document(f, raw, source)
        if isinstance(doc, LoadIssue):
            self.failed.append(doc)
            with self.store.transaction():
                if old:  # the file went bad: its old chunks no longer describe it
                    self.store.delete_doc(source)
                    self.deleted += 1
                    self.changed = True
                self.store.record_failure(source, real, st.st_size, st.st_mtime_ns, doc.message, doc.hint)
            return
        self.warnings.extend(doc.issues)
        chunks = chunk_sections(
            doc.sections, self.emb.tokenizer, min(self.chunk_tokens, self.emb.max_tokens), self.overlap
        )
        self.pending.append(_Pending(source, state, doc.title, chunks, old is None))
        self.n_pending += len(chunks)
        if self.n_pending >= FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        all_chunks = [c for p in self.pending for c in p.chunks]
        cached = self.store.vectors_by_hash([c.hash for c in all_chunks])
        todo = list(dict.fromkeys(c.hash for c in all_chunks if c.hash not in cached))
        texts = {c.hash: c.text for c in all_chunks}
        fresh = self.emb.encode([texts[h] for h in todo])
        vec_of = {h: np.frombuffer(v, dtype=np.float32) for h, v in cached.items()}
        vec_of.update(zip(todo, fresh, strict=True))
        self.embedded += len(todo)
        self.reused += len(all_chunks) - len(todo)
        with self.store.transaction():
            for p in self.pending:
                vectors = (
                    np.stack([vec_of[c.hash] for c in p.chunks]) if p.chunks else np.zeros((0, 1), np.float32)
                )
                self.store.replace_doc(p.source, p.state, p.title, p.chunks, vectors)
                self.added += p.is_new
                self.updated += not p.is_new
        self.changed = True
        self.pending, self.n_pending = [], 0

    def delete_missing(self, roots: list[Path]) -> None:
        """Documents whose file lived under an indexed root (or was an indexed file) and is gone now."""
        prefixes = [str(r.resolve()) for r in roots]

        def under(path: str) -> bool:
            return any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)

        gone = [s for s, d in self.known.items() if s not in self.seen and under(d.path)]
        gone_bad = [s for s, d in self.known_bad.items() if s not in self.seen and under(d[0])]
        if gone or gone_bad:
            with self.store.transaction():
                for s in gone + gone_bad:
                    self.store.delete_doc(s)
            self.deleted += len(gone)
            self.changed = True
