"""Exact and near-duplicate groups in sub-quadratic time: MinHash signatures + LSH banding.

Design (named in docs/data.md):
- Text is normalised (lower case, words only), so "Hello, World!" and "hello world" are exact duplicates.
- Shingles are word 2-grams (a text of one word is one shingle). Training examples are short, and with
  3-grams one inserted word in a 20-word example already drops Jaccard below 0.8; with 2-grams it stays ~0.86.
  Words become integer ids through a per-run vocabulary (deterministic for a given file, no hashing cost),
  and shingles are mixed to 64-bit values with numpy, vectorised over the whole corpus.
- 64 MinHash functions (multiply-shift hashing), 16 bands of 4 rows: a pair with Jaccard 0.7 becomes a
  candidate with probability 0.99 (0.8: > 0.999), a pair at 0.3 with < 0.13.
- Candidates are checked with the exact Jaccard of their shingle sets (>= ``threshold``), so a reported
  pair is a real near-duplicate, never an LSH accident.
- Within one LSH bucket each member is compared with the bucket's first member only (a star, not all
  pairs): linear in the bucket size, so a file of 100,000 near-identical lines stays fast. Groups are the
  connected components (union-find) of the confirmed pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")
N_PERM = 64
BANDS = 16
ROWS = N_PERM // BANDS


def normalize_text(text: str) -> str:
    """Lower case, punctuation and spacing removed: the key for exact duplicates."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Groups:
    """``group[i]`` is the id of item i's group (an item alone has its own id); ``exact[i]`` likewise
    for exact (normalised) duplicates only."""

    group: np.ndarray
    exact: np.ndarray

    def members(self, which: str = "group") -> list[list[int]]:
        """Groups with more than one member, as sorted index lists, ordered by first member."""
        ids = self.group if which == "group" else self.exact
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        out = [sorted(part.tolist()) for part in np.split(order, bounds) if len(part) > 1]
        return sorted(out, key=lambda g: g[0])


def find_groups(
    texts: Sequence[str], threshold: float = 0.7, seed: int = 0, normalized: bool = False
) -> Groups:
    """Group ``texts`` into exact (after normalisation) and near-duplicate (Jaccard >= threshold) sets.
    ``normalized=True``: the texts are already ``normalize_text`` output (saves a pass)."""
    n = len(texts)
    parent = np.arange(n)
    norm = list(texts) if normalized else normalize_many(texts)
    exact = _exact_ids(norm)
    for i in np.flatnonzero(exact != np.arange(n)).tolist():
        _union(parent, i, int(exact[i]))
    reps = np.flatnonzero(exact == np.arange(n))  # one representative per exact group
    if len(reps) > 1:
        shingles, offsets = _shingles([norm[i] for i in reps.tolist()])
        sig = _minhash(shingles, offsets, seed)
        for a, b in sorted(_candidates(sig)):
            if _jaccard(shingles, offsets, a, b) >= threshold:
                _union(parent, int(reps[a]), int(reps[b]))
    roots = np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
    return Groups(roots, exact.astype(np.int64))


_SEP = "\x1e"  # record separator: joins the corpus so normalisation is one regex pass, not n
_NOT_WORD = re.compile(r"[^\w\x1e]+")


def normalize_many(texts: Sequence[str]) -> list[str]:
    """``normalize_text`` for many texts at once (one regex pass over the joined corpus)."""
    big = _SEP.join(texts)
    if big.count(_SEP) != len(texts) - 1:  # a text holds the separator itself: do it one by one
        return [normalize_text(t) for t in texts]
    big = _NOT_WORD.sub(" ", big.lower())
    return [d.strip() for d in big.split(_SEP)] if texts else []


def _exact_ids(norm: list[str]) -> np.ndarray:
    first: dict[str, int] = {}
    return np.array([first.setdefault(t, i) for i, t in enumerate(norm)], dtype=np.int64)


def _shingles(norm: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes, concatenated text by text, and per-text offsets."""
    words_all = " ".join(norm).split(" ")  # an empty text contributes one empty word, as count() says
    lengths = np.fromiter((t.count(" ") + 1 for t in norm), dtype=np.int64, count=len(norm))
    vocab = {w: i + 1 for i, w in enumerate(dict.fromkeys(words_all))}
    w = np.fromiter(map(vocab.__getitem__, words_all), dtype=np.uint64, count=len(words_all))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    k = 2
    # a k-gram starting at position p is valid when it stays inside its text
    doc_of = np.repeat(np.arange(len(norm)), lengths)
    pos = np.arange(len(w)) - starts[doc_of]
    valid = pos + k <= lengths[doc_of]
    short = lengths < k  # short texts: one shingle made of all their words, starting at position 0
    valid |= (pos == 0) & short[doc_of]
    p = np.flatnonzero(valid)
    end = starts[doc_of[p]] + lengths[doc_of[p]]
    with np.errstate(over="ignore"):
        h = w[p] * np.uint64(0x9E3779B97F4A7C15)
        for j in range(1, k):
            nxt = np.where(p + j < end, w[np.minimum(p + j, len(w) - 1)], np.uint64(0))
            h = (
                h ^ (nxt + np.uint64(0x632BE59BD9B4E019) + (h << np.uint64(6)) + (h >> np.uint64(2)))
            ) * np.uint64(0xBF58476D1CE4E5B9)
    docs = doc_of[p]  # non-decreasing: shingles stay grouped by text (repeats are harmless for MinHash)
    offsets = np.searchsorted(docs, np.arange(len(norm) + 1))
    return h, offsets


def _minhash(shingles: np.ndarray, offsets: np.ndarray, seed: int) -> np.ndarray:
    """Signatures with multiply-shift hashing ((a*x + b) mod 2^64, high 32 bits), a universal family that
    costs three vector operations per hash function."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, np.iinfo(np.int64).max, size=N_PERM, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.int64).max, size=N_PERM, dtype=np.uint64)
    n_docs = len(offsets) - 1
    sig = np.full((n_docs, N_PERM), np.iinfo(np.uint64).max, dtype=np.uint64)
    nonempty = offsets[1:] > offsets[:-1]
    starts = offsets[:-1][nonempty]
    if not len(starts):
        return sig
    with np.errstate(over="ignore"):
        for j in range(N_PERM):
            vals = (shingles * a[j] + b[j]) >> np.uint64(32)
            sig[nonempty, j] = np.minimum.reduceat(vals, starts)
    return sig


def _candidates(sig: np.ndarray) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for band in range(BANDS):
        block = np.ascontiguousarray(sig[:, band * ROWS : (band + 1) * ROWS])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * ROWS))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        if not len(shared):
            continue
        order = shared[np.argsort(inverse[shared], kind="stable")]
        buckets = inverse[order]
        starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
        head = np.repeat(order[starts], np.diff(np.concatenate((starts, [len(order)]))))
        for a, b in zip(head.tolist(), order.tolist(), strict=True):
            if a != b:
                pairs.add((a, b))
    return pairs


def _jaccard(shingles: np.ndarray, offsets: np.ndarray, a: int, b: int) -> float:
    sa, sb = (
        np.unique(shingles[offsets[a] : offsets[a + 1]]),
        np.unique(shingles[offsets[b] : offsets[b + 1]]),
    )
    if not len(sa) or not len(sb):
        return 0.0
    inter = len(np.intersect1d(sa, sb, assume_unique=True))
    return inter / (len(sa) + len(sb) - inter)


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def _union(parent: np.ndarray, a: int, b: int) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
