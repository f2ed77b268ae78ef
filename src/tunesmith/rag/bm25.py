"""The lexical side of hybrid retrieval: a bm25s index over the chunk texts, saved beside the SQLite file.

The BM25 folder records the store ``generation`` it was built from; a reader that finds a stale or missing
folder (a crash between the commit and the save, a copied index) rebuilds it from SQLite instead of
returning results that disagree with the vectors.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.rag.store import SqliteStore

_WORD = re.compile(r"\w\w+", re.UNICODE)
# Function words carry no evidence for BM25; a short fixed list keeps "not", numbers and domain terms.
_STOPWORD_TEXT = (
    "a an and are as at be but by for from has have he her his i if in into is it its of on or our she so "
    "such than that the their them then there these they this those to was we were what when where which "
    "who whom why will with would you your do does did how can could should about"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased words minus stop words, with a light plural/suffix stemmer (no extra dependency)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 5 and w.endswith("ing"):
        return _undouble(w[:-3])
    if len(w) > 4 and w.endswith("ed") and not w.endswith("eed"):
        return _undouble(w[:-2])
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _undouble(w: str) -> str:
    """resett(ing) -> reset, stopp(ed) -> stop; but not "ll"/"ss" words like "install", "pass"."""
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        return w[:-1]
    return w


class Bm25Index:
    def __init__(self, retriever: Any, ids: np.ndarray) -> None:
        self.retriever = retriever
        self.ids = ids

    def search(self, query: str, n: int) -> list[tuple[int, float]]:
        """``(chunk id, BM25 score)`` best first; chunks sharing no term with the query are left out."""
        if len(self.ids) == 0:
            return []
        vocab = self.retriever.vocab_dict
        terms = [t for t in tokenize(query) if t in vocab]
        if not terms:
            return []
        scores = self.retriever.get_scores(terms)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]


def build_bm25(store: SqliteStore) -> Bm25Index:
    import bm25s

    ids, texts = store.all_texts()
    retriever = bm25s.BM25()
    if texts:
        # an empty token list would make bm25s drop the row; a placeholder keeps ids aligned
        retriever.index([tokenize(t) or ["\u2205"] for t in texts], show_progress=False)
    return Bm25Index(retriever, ids)


def save_bm25(store: SqliteStore, index_dir: Path) -> Bm25Index:
    """Build and save atomically: write a temp folder, then swap it in by rename."""
    index = build_bm25(store)
    final = Path(index_dir) / "bm25"
    tmp = Path(index_dir) / f".bm25.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if len(index.ids):
        index.retriever.save(str(tmp), show_progress=False)
    np.save(tmp / "ids.npy", index.ids)
    (tmp / "generation").write_text(str(store.generation))
    old = Path(index_dir) / f".bm25.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return index


def load_bm25(store: SqliteStore, index_dir: Path) -> Bm25Index:
    import bm25s

    folder = Path(index_dir) / "bm25"
    try:
        if (folder / "generation").read_text().strip() == str(store.generation):
            ids = np.load(folder / "ids.npy")
            if len(ids) == 0:
                return Bm25Index(bm25s.BM25(), ids)
            retriever = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
            return Bm25Index(retriever, ids)
    except (OSError, ValueError):
        pass  # missing or damaged: rebuilt below from the source of truth
    return build_bm25(store)
