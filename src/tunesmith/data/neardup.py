"""Exact and near-duplicate groups in sub-quadratic time: MinHash signatures + LSH banding.

Design (named in docs/data.md):
- Text is normalised (lower case, words only), so "Hello, World!" and "hello world" are exact duplicates.
- Shingles are word 2-grams (a text of one word is one shingle). Training examples are short, and with
  3-grams one inserted word in a 20-word example already drops Jaccard below 0.8; with 2-grams it stays ~0.86.
  Words become 64-bit polynomial hashes of their bytes, computed with numpy prefix sums (no Python work per
  word, the same in every run), and shingles are mixed to 64-bit values, vectorised over the whole corpus.
- 64 MinHash functions (multiply-shift hashing), 16 bands of 4 rows: a pair with Jaccard 0.7 becomes a
  candidate with probability 0.99 (0.8: > 0.999), a pair at 0.3 with < 0.13.
- Candidates are checked with the exact Jaccard of their shingle sets (>= ``threshold``), so a reported
  pair is a real near-duplicate, never an LSH accident.
- Within one LSH bucket each member is compared with the bucket's first member only (a star, not all
  pairs): linear in the bucket size, so a file of 100,000 near-identical lines stays fast. Groups are the
  connected components (union-find) of the confirmed pairs.
"""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True)
class Similar:
    """Per item: ``inputs`` groups near-identical inputs; ``examples`` splits those groups by answer
    (near-identical inputs whose answers are equal or nearly so); ``exact`` groups exact copies of the
    whole example. Ids are the index of a member of the group."""

    inputs: np.ndarray
    examples: np.ndarray
    exact: np.ndarray


def find_similar(
    inputs: Sequence[str],
    answers: Sequence[str],
    whole: Sequence[str],
    threshold: float = 0.7,
    answer_threshold: float = 0.9,
) -> Similar:
    """Near-identical inputs (Jaccard >= ``threshold``), split by answer (the same answer: Jaccard >=
    ``answer_threshold``), and exact copies of ``whole``. All texts are ``normalize_text`` output.
    Answers are compared only within groups of near-identical inputs, so the second pass is small."""
    n = len(inputs)
    g_in = find_groups(inputs, threshold, normalized=True)
    ans = np.arange(n, dtype=np.int64)
    multi = np.flatnonzero(np.bincount(g_in.group, minlength=n)[g_in.group] > 1)
    if len(multi):
        g_ans = find_groups([answers[i] for i in multi.tolist()], answer_threshold, normalized=True)
        ans[multi] = multi[g_ans.group]
    key: dict[tuple[int, int], int] = {}
    examples = np.fromiter(
        (key.setdefault((int(a), int(b)), i) for i, (a, b) in enumerate(zip(g_in.group, ans, strict=True))),
        dtype=np.int64,
        count=n,
    )
    return Similar(g_in.group, examples, _exact_ids(list(whole)))


def members(ids: np.ndarray) -> list[list[int]]:
    """Groups of more than one item of an id array (``Similar`` fields), sorted, by first member."""
    return Groups(ids, ids).members()


_SEP = "\x1e"  # record separator: joins the corpus so normalisation is one regex pass, not n
_NOT_WORD = re.compile(r"[^\w\x1e]+")


def normalize_many(texts: Sequence[str]) -> list[str]:
    """``normalize_text`` for many texts at once: texts are joined into batches and normalised in one pass
    per batch. An all-ASCII batch takes a byte-translation fast path (``bytes.lower`` + ``translate``, about
    10x a regex pass; for ASCII, ``\\w`` is exactly ``[A-Za-z0-9_]``); any other batch takes the regex."""
    out: list[str] = []
    for s in range(0, len(texts), _NORM_BATCH):
        out += _normalize_batch(texts[s : s + _NORM_BATCH])
    return out


_NORM_BATCH = 2_000
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_\x1e")
_ASCII_TABLE = bytes(c if c in _WORD_BYTES else 32 for c in range(256))


def _normalize_batch(texts: Sequence[str]) -> list[str]:
    big = _SEP.join(texts)
    if big.count(_SEP) != len(texts) - 1:  # a text holds the separator itself: do it one by one
        return [normalize_text(t) for t in texts]
    if big.isascii():
        flat = big.encode("ascii").lower().translate(_ASCII_TABLE).decode("ascii")
        return [" ".join(d.split()) for d in flat.split(_SEP)] if texts else []
    big = _NOT_WORD.sub(" ", big.lower())
    return [d.strip() for d in big.split(_SEP)] if texts else []


def _exact_ids(norm: list[str]) -> np.ndarray:
    first: dict[str, int] = {}
    return np.array([first.setdefault(t, i) for i, t in enumerate(norm)], dtype=np.int64)


def _shingles(norm: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes, concatenated text by text, and per-text offsets."""
    lengths = np.fromiter((t.count(" ") + 1 for t in norm), dtype=np.int64, count=len(norm))
    w = _word_hashes(norm, int(lengths.sum()))  # an empty text contributes one empty word (hash 0)
    # word 2-grams: every word but the last of its text starts one; a one-word text is one shingle
    # (the word with an empty partner). Shingles stay grouped by text, in order.
    ends = np.cumsum(lengths)
    starts = ends - lengths
    short = lengths < 2
    nxt = np.zeros_like(w)
    nxt[:-1] = w[1:]
    nxt[starts[short]] = 0
    valid = np.ones(len(w), dtype=bool)
    valid[ends - 1] = False
    valid[starts[short]] = True
    with np.errstate(over="ignore"):
        h = w[valid] * np.uint64(0x9E3779B97F4A7C15)
        h = (
            h ^ (nxt[valid] + np.uint64(0x632BE59BD9B4E019) + (h << np.uint64(6)) + (h >> np.uint64(2)))
        ) * np.uint64(0xBF58476D1CE4E5B9)
    offsets = np.concatenate(([0], np.cumsum(np.maximum(lengths - 1, 1))))
    return h, offsets


_P = 0x100000001B3  # odd, so invertible modulo 2**64
_P_INV = pow(_P, -1, 2**64)
_WORD_CHUNK = 1 << 22  # bytes per vectorised hashing pass (~4 MB: a few 32 MB arrays at a time)


def _powers(base: int, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.full(n, base, dtype=np.uint64)
        out[0] = 1
        return np.cumprod(out, dtype=np.uint64)  # wraps modulo 2**64, as intended


def _word_hashes(norm: list[str], n_words: int) -> np.ndarray:
    """A 64-bit id per word (words are the single-space-separated runs of the normalised texts), in order.
    Polynomial hashing of the UTF-8 bytes over prefix sums, vectorised with numpy: no Python-level work per
    word, and the same ids in every run (unlike ``hash``). Distinct words collide with negligible
    probability, and a collision could only add a candidate pair that the exact Jaccard check then sees."""
    bounds = [0]
    while bounds[-1] < len(norm):
        end, size = bounds[-1], 0
        while end < len(norm) and (end == bounds[-1] or size + len(norm[end]) < _WORD_CHUNK):
            size += len(norm[end]) + 1
            end += 1
        bounds.append(end)
    chunks = [" ".join(norm[a:b]).encode("utf-8") for a, b in itertools.pairwise(bounds)]
    longest = max((len(c) for c in chunks), default=0)
    pw, inv = _powers(_P, longest), _powers(_P_INV, longest + 1)
    out = np.empty(n_words, dtype=np.uint64)
    at = 0
    for chunk in chunks:
        b = np.frombuffer(chunk, dtype=np.uint8)
        spaces = np.flatnonzero(b == 32)
        starts = np.concatenate(([0], spaces + 1))
        ends = np.concatenate((spaces, [len(b)]))
        with np.errstate(over="ignore"):
            prefix = np.zeros(len(b) + 1, dtype=np.uint64)
            np.cumsum((b.astype(np.uint64) + np.uint64(1)) * pw[: len(b)], out=prefix[1:])
            out[at : at + len(starts)] = (prefix[ends] - prefix[starts]) * inv[starts]
        at += len(starts)
    assert at == n_words, (at, n_words)
    return out


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
    vals = np.empty_like(shingles)  # one buffer, reused: no allocation per hash function
    shift = np.uint64(32)
    with np.errstate(over="ignore"):
        for j in range(N_PERM):
            np.multiply(shingles, a[j], out=vals)
            np.add(vals, b[j], out=vals)
            np.right_shift(vals, shift, out=vals)
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
