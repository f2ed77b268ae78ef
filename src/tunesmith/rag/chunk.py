"""Token-aware chunking with overlap that keeps headings with their text.

Sizes are counted in the *embedder's* tokens (what it truncates at), not in characters. Rules:

- every chunk starts with the heading path of its section (``Guide > Install``), so a chunk cut from the
  middle of a long section still says what it is about, and a heading never sits alone at a chunk's end;
- a section that fits is kept whole, and consecutive small sections are packed into one chunk (fewer, fuller
  chunks embed better than many three-word ones);
- a long section is cut into windows of ``chunk_tokens`` with ``overlap`` tokens shared by neighbours; a cut
  moves back to the last sentence or line end in the window's second half, so sentences are rarely split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.rag.loaders import Section

_BOUNDARY_CHARS = ".!?;:\n"


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: str
    location: str
    n_tokens: int

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def chunk_sections(
    sections: list[Section], tokenizer: Any, chunk_tokens: int = 256, overlap: int = 32
) -> list[Chunk]:
    """Cut a document's sections into chunks of at most ``chunk_tokens`` embedder tokens."""
    if overlap >= chunk_tokens:
        raise TunesmithError(
            f"chunk overlap ({overlap}) must be smaller than chunk size ({chunk_tokens}).",
            "Set rag.chunk_overlap below rag.chunk_tokens (e.g. 32 and 256).",
        )
    pieces: list[tuple[Chunk, bool]] = []  # (chunk, is a whole section that may be packed)
    for section in sections:
        pieces.extend(_split_section(section, tokenizer, chunk_tokens, overlap))
    return _pack(pieces, chunk_tokens)


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _split_section(
    section: Section, tokenizer: Any, chunk_tokens: int, overlap: int
) -> list[tuple[Chunk, bool]]:
    prefix = f"{section.heading}\n" if section.heading else ""
    n_prefix = count_tokens(tokenizer, prefix) if prefix else 0
    if n_prefix > chunk_tokens // 2:  # an absurd heading must not eat the chunk: keep its last part
        prefix, n_prefix = _truncate_heading(section.heading, tokenizer, chunk_tokens // 4)
    budget = chunk_tokens - n_prefix
    enc = tokenizer(section.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    n = len(offsets)
    if n == 0:
        return []
    if n <= budget:
        return [(Chunk(prefix + section.text, section.heading, section.location, n + n_prefix), True)]
    out = []
    start = 0
    step_overlap = min(overlap, budget // 2)
    while start < n:
        end = min(start + budget, n)
        if end < n:
            end = _snap_to_boundary(section.text, offsets, start, end)
        body = section.text[offsets[start][0] : offsets[end - 1][1]].strip()
        out.append((Chunk(prefix + body, section.heading, section.location, end - start + n_prefix), False))
        if end >= n:
            break
        start = max(end - step_overlap, start + 1)
    return out


def _snap_to_boundary(text: str, offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """Move ``end`` back to just after a sentence/line end, but not below the window's middle."""
    lowest = start + (end - start) // 2
    for i in range(end - 1, lowest, -1):
        gap = text[offsets[i - 1][1] : offsets[i][0]]
        if "\n" in gap or (text[offsets[i - 1][0] : offsets[i - 1][1]][-1:] in _BOUNDARY_CHARS):
            return i
    return end


def _truncate_heading(heading: str, tokenizer: Any, max_tokens: int) -> tuple[str, int]:
    parts = heading.split(" > ")
    while len(parts) > 1 and count_tokens(tokenizer, " > ".join(parts)) > max_tokens:
        parts = parts[1:]
    ids = tokenizer(" > ".join(parts), add_special_tokens=False, verbose=False)["input_ids"][:max_tokens]
    short = tokenizer.decode(ids) + "\n"
    return short, count_tokens(tokenizer, short)


def _pack(pieces: list[tuple[Chunk, bool]], chunk_tokens: int) -> list[Chunk]:
    out: list[Chunk] = []
    group: list[Chunk] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if group:
            text = "\n\n".join(c.text for c in group)
            out.append(Chunk(text, group[0].heading, group[0].location, size))
        group, size = [], 0

    for chunk, packable in pieces:
        if not packable:
            flush()
            out.append(chunk)
            continue
        # +2: the blank line joining two sections costs about that many tokens
        if group and size + chunk.n_tokens + 2 > chunk_tokens:
            flush()
        size += chunk.n_tokens + (2 if group else 0)
        group.append(chunk)
    flush()
    return out
