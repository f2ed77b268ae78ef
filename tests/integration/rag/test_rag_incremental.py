"""Incremental indexing: unchanged files cost nothing, edits re-embed only new chunks, deletions, bad input,
another embedder, an interrupted run, and 10,000 files."""

from __future__ import annotations

import os
import sqlite3

import pytest
from rag_helpers import CountingEmbedder, write_corpus

from tunesmith.errors import TunesmithError
from tunesmith.rag.index import index_documents
from tunesmith.rag.retrieve import open_index, retrieve

pytestmark = pytest.mark.integration


def _db_rows(index_dir):
    con = sqlite3.connect(index_dir / "index.sqlite")
    try:
        return sorted(con.execute("SELECT source, ord, text, hash FROM chunks").fetchall())
    finally:
        con.close()


def test_reindexing_an_unchanged_folder_does_no_work(corpus, tmp_path):
    idx = tmp_path / "idx"
    emb = CountingEmbedder()
    first = index_documents([corpus], idx, embedder=emb)
    assert first.added == 6 and first.n_docs == 6 and first.failed == []
    assert sum(emb.calls) == first.chunks_embedded == first.n_chunks > 0
    before = _db_rows(idx)
    gen_before = (idx / "bm25" / "generation").read_text()
    emb.calls.clear()
    again = index_documents([corpus], idx, embedder=emb)
    assert (again.unchanged, again.added, again.updated, again.deleted) == (6, 0, 0, 0)
    assert again.files_read == 0 and emb.calls == []  # not read, not embedded
    assert _db_rows(idx) == before and (idx / "bm25" / "generation").read_text() == gen_before
    # touched but identical: read and hashed once, still nothing embedded
    os.utime(corpus / "guide.md", ns=(1, 1))
    touched = index_documents([corpus], idx, embedder=emb)
    assert touched.files_read == 1 and touched.unchanged == 6 and emb.calls == []


def test_edit_add_delete_update_only_what_changed(corpus, tmp_path):
    idx = tmp_path / "idx"
    emb = CountingEmbedder()
    index_documents([corpus], idx, embedder=emb, chunk_tokens=32, chunk_overlap=4)
    emb.calls.clear()
    guide = corpus / "guide.md"
    guide.write_text(guide.read_text().replace("ten seconds", "twenty seconds"))
    (corpus / "new.txt").write_text("The newest widget colour is teal.")
    (corpus / "codes.txt").unlink()
    rep = index_documents([corpus], idx, embedder=emb, chunk_tokens=32, chunk_overlap=4)
    assert (rep.added, rep.updated, rep.deleted, rep.unchanged) == (1, 1, 1, 4)
    assert rep.chunks_reused >= 1  # the guide's untouched sections kept their vectors
    assert sum(emb.calls) == rep.chunks_embedded < rep.chunks_embedded + rep.chunks_reused
    index = open_index(idx)
    sources = {p.source for p in retrieve(index, "error code XJ-42 battery firmware", k=10)}
    assert "codes.txt" not in sources
    top = retrieve(index, "How long do I hold the red button to reset?", k=1)[0]
    assert top.source == "guide.md" and "twenty seconds" in top.text
    assert retrieve(index, "what colour is the newest widget", k=1)[0].source == "new.txt"


def test_bad_files_are_reported_and_the_rest_indexed(corpus, tmp_path):
    (corpus / "empty.md").write_text("")
    (corpus / "photo.txt").write_bytes(bytes(range(256)) * 4)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    (corpus / "bad.jsonl").write_text("nope\n")
    idx = tmp_path / "idx"
    rep = index_documents([corpus], idx)
    assert rep.n_docs == 6
    by_source = {i.source: i.message for i in rep.failed}
    assert set(by_source) == {"empty.md", "photo.txt", "broken.pdf", "bad.jsonl"}
    assert "empty" in by_source["empty.md"] and "binary" in by_source["photo.txt"]
    assert "PDF" in by_source["broken.pdf"] and "no usable rows" in by_source["bad.jsonl"]
    # reported again on the next run without being re-read; fixed files get indexed
    again = index_documents([corpus], idx)
    assert {i.source for i in again.failed} == set(by_source) and again.files_read == 0
    (corpus / "empty.md").write_text("# Now\n\nIt has content about zebras.")
    fixed = index_documents([corpus], idx)
    assert fixed.added == 1 and "empty.md" not in {i.source for i in fixed.failed}
    # a good file that turns bad loses its old chunks
    (corpus / "codes.txt").write_bytes(b"\x00\x01\x02" * 100)
    went_bad = index_documents([corpus], idx)
    assert went_bad.deleted == 1 and went_bad.n_docs == 6


def test_index_built_with_another_embedder_is_refused_and_left_intact(corpus, tmp_path, tiny_embedder_dir):
    idx = tmp_path / "idx"
    index_documents([corpus], idx, embedder=str(tiny_embedder_dir))
    before = _db_rows(idx)
    with pytest.raises(TunesmithError, match="built with embedder") as err:
        index_documents([corpus], idx)  # minilm
    assert "--rebuild" in err.value.hint
    with pytest.raises(TunesmithError, match="cannot be compared"):
        open_index(idx, embedder="minilm")
    assert _db_rows(idx) == before
    # it opens with its own embedder (recorded in the index) and rebuilds cleanly with --rebuild
    assert retrieve(open_index(idx), "red button reset", k=1)
    rebuilt = index_documents([corpus], idx, rebuild=True)
    assert rebuilt.added == 6 and open_index(idx).embedder.name == "minilm"


def test_an_interrupted_run_leaves_a_consistent_index(tmp_path, monkeypatch):
    monkeypatch.setattr("tunesmith.rag.index.FLUSH_CHUNKS", 8)  # small batches, so the run dies mid-way
    docs = write_corpus(
        tmp_path / "docs", {f"d{i:03d}.txt": f"Document {i} is about topic number {i}." for i in range(40)}
    )
    idx = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        index_documents([docs], idx, embedder=CountingEmbedder(fail_after=20))
    index = open_index(idx)
    n_docs, n_chunks = index.store.count()
    assert (
        n_docs == 16 and n_chunks == n_docs
    )  # two whole batches of 8; the third rolled back  # whole batches only: no doc without its chunks
    assert all(p.source.startswith("d") for p in retrieve(index, "topic number 7", k=3, mode="bm25"))
    index.close()
    emb = CountingEmbedder()
    done = index_documents([docs], idx, embedder=emb)
    assert done.n_docs == 40 and done.unchanged == n_docs and sum(emb.calls) == 40 - n_docs


def test_ten_thousand_files(tmp_path):
    """10,000 files (a few bad): each bad file named, the rest indexed; identical texts are embedded once."""
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(10_000):
        (docs / f"f{i:05d}.txt").write_text(
            f"Shared paragraph number {i % 50} about widgets." if i % 1000 else ""
        )
    emb = CountingEmbedder()
    rep = index_documents([docs], tmp_path / "idx", embedder=emb)
    assert rep.files_seen == 10_000 and rep.n_docs == 9_990 and len(rep.failed) == 10
    assert sorted(i.source for i in rep.failed)[:2] == ["f00000.txt", "f01000.txt"]
    assert sum(emb.calls) == 50  # content-keyed: 50 distinct chunk texts
    again = index_documents([docs], tmp_path / "idx", embedder=emb)
    assert again.unchanged == 9_990 and again.files_read == 0
