"""The PostgreSQL + pgvector store against a real local server (pgserver: PostgreSQL 16 + pgvector, from pip):
the same rankings and the same incremental work as the SQLite store, selected by a URL, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
from rag_helpers import CountingEmbedder
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.errors import TunesmithError
from tunesmith.rag import pgstore
from tunesmith.rag.index import index_documents
from tunesmith.rag.pgstore import PgStore
from tunesmith.rag.retrieve import open_index, retrieve

pytestmark = pytest.mark.integration

QUESTIONS = [
    "How do I reset the widget?",
    "What is the capital city of Freedonia?",
    "How much is the pro plan per month?",
    "What does error code XJ-42 mean?",
    "Who is the head of engineering?",
    "How long does shipping to Europe take?",
]


@pytest.fixture(scope="module")
def pg_server():
    """A real PostgreSQL 16 with pgvector, in a temporary folder, stopped and deleted at the end."""
    try:
        with warnings.catch_warnings():  # platformdirs warns about a missing XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        pytest.skip(
            f"cannot start a PostgreSQL server: pgserver is not installed ({exc}); pip install -e '.[dev]'"
        )
    # Not tmp_path_factory: as root, pgserver runs postgres as a `pgserver` user and opens every parent of
    # the data folder to other users (chmod o+rx); that must not loosen pytest's private base folder.
    root = Path(tempfile.mkdtemp(prefix="tunesmith-pg-"))
    try:
        server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL here: {type(exc).__name__}: {exc}")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """A fresh database per test: the URL is the index, as a folder is for SQLite."""
    name = "t_" + request.node.name.lower()[:50]
    _admin(pg_server, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    return pg_server.get_uri(name)


def _admin(server, *statements: str) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def _ranked(index, question: str, mode: str) -> list[tuple[str, str, float]]:
    return [(p.source, p.text, p.score) for p in retrieve(index, question, k=5, mode=mode)]


def test_server_index_ranks_like_the_sqlite_store(corpus, tmp_path, pg_url):
    runner = CliRunner()
    small = ["--chunk-tokens", "32", "--chunk-overlap", "4"]  # more chunks than documents, to rank
    res = runner.invoke(app, ["rag", "index", str(corpus), "--index", pg_url, *small, "--json"])
    assert res.exit_code == 0, res.output
    on_server = json.loads(res.stdout)
    on_disk = index_documents([corpus], tmp_path / "idx", chunk_tokens=32, chunk_overlap=4)
    assert (on_server["n_docs"], on_server["n_chunks"]) == (on_disk.n_docs, on_disk.n_chunks)
    assert on_disk.n_chunks > on_disk.n_docs == 6
    assert not (Path.cwd() / "postgresql:").exists()  # the URL was not taken for a folder

    pg, lite = open_index(pg_url), open_index(tmp_path / "idx")
    assert type(pg).__name__ == "PgIndex"
    for question in QUESTIONS:
        for mode in ("dense", "bm25", "hybrid"):
            got, want = _ranked(pg, question, mode), _ranked(lite, question, mode)
            assert [g[:2] for g in got] == [w[:2] for w in want], (mode, question)
            assert [g[2] for g in got] == pytest.approx([w[2] for w in want], abs=1e-5)
        top = retrieve(pg, question, k=3)
        assert pg.cosine(question, [p.chunk_id for p in top]) == pytest.approx(
            lite.cosine(question, [p.chunk_id for p in retrieve(lite, question, k=3)]), abs=1e-5
        )

    # The HNSW index is there, and a search forced through it returns what the exact scan returns.
    store = pg.store
    q = pg.embedder.encode(["reset the widget"])[0]
    exact = store.nearest(q, 50)
    with store.conn.transaction():
        store.conn.execute("SET LOCAL enable_seqscan = off")
        plan = " ".join(r[0] for r in store.conn.execute("EXPLAIN " + pgstore.NEAREST_SQL, (q, q, 50)))
        assert "chunks_vector_hnsw" in plan
        via_hnsw = store.nearest(q, 50)
    assert [i for i, _ in via_hnsw] == [i for i, _ in exact]
    assert [c for _, c in via_hnsw] == pytest.approx([c for _, c in exact], abs=1e-6)
    assert len(exact) == on_disk.n_chunks

    res = runner.invoke(app, ["rag", "query", pg_url, "capital of Freedonia", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["source"] == "geo/freedonia.txt"
    pg.close()
    lite.close()


def _work(report) -> dict:
    return {k: v for k, v in asdict(report).items() if k != "seconds"}


def _chunk_rows(url: str) -> dict[str, list[tuple]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT source, id, hash FROM chunks ORDER BY id").fetchall()
    out: dict[str, list[tuple]] = {}
    for source, i, h in rows:
        out.setdefault(source, []).append((i, h))
    return out


def test_incremental_updates_do_the_same_work_as_sqlite(corpus, tmp_path, pg_url):
    emb = CountingEmbedder()
    settings = {"embedder": emb, "chunk_tokens": 32, "chunk_overlap": 4}

    def both() -> dict:
        emb.calls.clear()
        on_server = index_documents([corpus], pg_url, **settings)
        embedded_on_server = sum(emb.calls)
        on_disk = index_documents([corpus], tmp_path / "idx", **settings)
        assert _work(on_server) == _work(on_disk)
        assert embedded_on_server == on_server.chunks_embedded
        return _work(on_server)

    first = both()
    assert first["added"] == 6 and first["chunks_embedded"] > 0
    before = _chunk_rows(pg_url)

    again = both()
    assert (again["unchanged"], again["files_read"], again["chunks_embedded"]) == (6, 0, 0)
    assert _chunk_rows(pg_url) == before
    os.utime(corpus / "guide.md", ns=(1, 1))  # touched, same bytes: read and hashed, nothing embedded
    touched = both()
    assert (touched["files_read"], touched["unchanged"], touched["chunks_embedded"]) == (1, 6, 0)

    guide = corpus / "guide.md"
    guide.write_text(guide.read_text().replace("ten seconds", "twenty seconds"))
    (corpus / "codes.txt").unlink()
    edited = both()
    assert (edited["updated"], edited["deleted"], edited["unchanged"]) == (1, 1, 4)
    assert 0 < edited["chunks_embedded"] < edited["chunks_embedded"] + edited["chunks_reused"]
    after = _chunk_rows(pg_url)
    assert set(after) == set(before) - {"codes.txt"}
    assert {s: r for s, r in after.items() if s != "guide.md"} == {
        s: r for s, r in before.items() if s not in ("guide.md", "codes.txt")
    }  # the other documents' rows were not rewritten
    index = open_index(pg_url)
    top = retrieve(index, "How long do I hold the red button to reset?", k=1)[0]
    assert top.source == "guide.md" and "twenty seconds" in top.text
    assert "codes.txt" not in {p.source for p in retrieve(index, "error code XJ-42", k=10)}
    index.close()


def test_rebuild_with_another_embedder_retypes_the_vectors(corpus, pg_url, tiny_embedder_dir):
    index_documents([corpus], pg_url)
    with pytest.raises(TunesmithError, match="was built with embedder"):
        index_documents([corpus], pg_url, embedder=str(tiny_embedder_dir))
    rep = index_documents([corpus], pg_url, embedder=str(tiny_embedder_dir), rebuild=True)
    assert rep.added == 6
    index = open_index(pg_url, embedder=str(tiny_embedder_dir))
    assert index.store.conn.execute("SELECT vector_dims(vector) FROM chunks LIMIT 1").fetchone()[0] == 32
    assert len(retrieve(index, "XJ-42", k=3, mode="dense")) == 3
    index.close()


def test_a_second_writer_and_a_missing_index_are_refused(corpus, pg_url):
    with pytest.raises(TunesmithError, match="No RAG index in the database") as err:
        open_index(pg_url)
    assert "rag index" in err.value.hint
    holder = PgStore(pg_url, create=True)
    try:
        with holder.writer_lock(), pytest.raises(TunesmithError, match="is writing"):
            index_documents([corpus], pg_url)
    finally:
        holder.close()


def test_missing_pgvector_or_psycopg_is_a_clear_error(corpus, pg_server, monkeypatch):
    # A plain user in a database without the extension: pgvector is not a trusted extension.
    _admin(pg_server, "DROP DATABASE IF EXISTS noext", "DROP ROLE IF EXISTS plain",
           "CREATE ROLE plain LOGIN", "CREATE DATABASE noext OWNER plain")  # fmt: skip
    url = pg_server.get_uri("noext").replace("postgres:@", "plain:@", 1)
    with pytest.raises(TunesmithError, match="pgvector extension is not enabled") as err:
        index_documents([corpus], url)
    assert "CREATE EXTENSION vector" in err.value.hint
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(TunesmithError, match="psycopg package is not installed") as err:
        open_index(url)
    assert "tunesmith[pgvector]" in err.value.hint


@pytest.mark.timeout(120)  # a hang guard only: without a connect timeout libpq would wait forever
def test_an_unreachable_server_fails_instead_of_waiting(corpus, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TunesmithError, match="Cannot connect to PostgreSQL") as err:
        index_documents([corpus], f"postgresql://tunesmith:secret@127.0.0.1:{port}/kb")
    assert "secret" not in str(err.value)
    assert "server is running" in err.value.hint

    # A server that accepts the connection and never answers: libpq gets our connect timeout, which ends
    # the wait with the same clear error (the test asserts the timeout reached libpq, not how fast it fired).
    import psycopg

    seen: list[dict] = []
    real_connect = psycopg.connect

    def recording_connect(**params):  # noqa: ANN003, ANN202
        seen.append(params)
        return real_connect(**params)

    monkeypatch.setattr(psycopg, "connect", recording_connect)
    monkeypatch.setattr(pgstore, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(TunesmithError, match="Cannot connect to PostgreSQL"):
            open_index(f"postgresql://tunesmith@127.0.0.1:{silent.getsockname()[1]}/kb")
    assert [p["connect_timeout"] for p in seen] == ["1"]
    # a URL's own connect_timeout wins over ours
    seen.clear()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(TunesmithError, match="Cannot connect to PostgreSQL"):
            open_index(f"postgresql://tunesmith@127.0.0.1:{silent.getsockname()[1]}/kb?connect_timeout=2")
    assert [p["connect_timeout"] for p in seen] == ["2"]
