"""Token-aware chunking: sizes in embedder tokens, overlap, headings kept with their text, packing."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.rag.chunk import chunk_sections, count_tokens
from tunesmith.rag.loaders import Section, load_document

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from tunesmith.models.load import minilm_dir

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def _sentences(n: int) -> list[str]:
    return [f"Sentence number {i} talks about topic {i * 7 % 13} in detail." for i in range(n)]


def test_short_section_is_one_chunk_that_starts_with_its_heading(tok):
    chunks = chunk_sections([Section("Guide > Install", "Run pip install widget.", "line 3")], tok, 64, 8)
    assert len(chunks) == 1
    assert chunks[0].text == "Guide > Install\nRun pip install widget."
    assert chunks[0].location == "line 3"
    assert chunks[0].n_tokens == count_tokens(tok, "Guide > Install\n") + count_tokens(
        tok, "Run pip install widget."
    )


def test_long_section_windows_fit_overlap_and_keep_the_heading(tok):
    body = " ".join(_sentences(60))
    chunks = chunk_sections([Section("Manual > Topics", body, "line 1")], tok, 64, 16)
    assert len(chunks) > 5
    for c in chunks:
        assert c.text.startswith("Manual > Topics\n")  # the heading travels with every window
        assert count_tokens(tok, c.text) <= 64 + 2  # +2: re-tokenising joined text may merge at the seam
    # every sentence survives somewhere, and neighbours share text (the overlap)
    for s in _sentences(60):
        assert any(s in c.text for c in chunks), s
    for a, b in zip(chunks, chunks[1:], strict=False):
        tail = a.text.split("\n", 1)[1].split()[-3:]
        assert " ".join(tail) in b.text
    # cuts move back to sentence ends: most windows end with a full stop
    assert sum(c.text.endswith(".") for c in chunks[:-1]) >= 0.8 * (len(chunks) - 1)


def test_zero_overlap_covers_without_repeating(tok):
    body = " ".join(_sentences(40))
    chunks = chunk_sections([Section("", body, "line 1")], tok, 48, 0)
    joined = " ".join(c.text for c in chunks)
    assert sum(joined.count(s) for s in _sentences(40)) <= 40 + len(
        chunks
    )  # at most one split sentence per cut
    for s in _sentences(40):
        assert s.split()[-1] in joined


def test_small_sections_are_packed_with_their_headings(tok):
    sections = [Section(f"FAQ > Q{i}", f"Answer {i} is short.", f"line {i}") for i in range(10)]
    chunks = chunk_sections(sections, tok, 40, 4)
    assert 1 < len(chunks) < 10
    for i in range(10):
        holder = [c for c in chunks if f"FAQ > Q{i}\nAnswer {i} is short." in c.text]
        assert len(holder) == 1  # each heading sits right above its own text, in exactly one chunk
    assert all(count_tokens(tok, c.text) <= 40 + 2 for c in chunks)


def test_markdown_headings_become_paths_and_code_fences_are_not_headings(tok, tmp_path):
    md = "# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\npip install x\n```\n\n## Reset\n\nHold the button.\n"
    doc = load_document(tmp_path / "g.md", md.encode(), "g.md")
    assert [s.heading for s in doc.sections] == ["Guide", "Guide > Install", "Guide > Reset"]
    assert "# not a heading" in doc.sections[1].text
    assert doc.sections[2].location == "line 12"  # the line of its heading


def test_overlap_not_smaller_than_chunk_is_a_clear_error(tok):
    with pytest.raises(TunesmithError, match="overlap"):
        chunk_sections([Section("", "text", "line 1")], tok, 32, 32)
