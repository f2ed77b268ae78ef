"""Retrieval: dense (exact cosine), BM25, and hybrid fused by reciprocal rank; optional cross-encoder rerank.

Reciprocal-rank fusion (Cormack et al. 2009) adds ``1 / (RRF_K + rank)`` from each list. It needs no score
calibration between BM25 (unbounded) and cosine (-1..1), which is why it is the default for hybrid search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tunesmith.errors import TunesmithError
from tunesmith.rag.bm25 import Bm25Index, load_bm25
from tunesmith.rag.embed import Embedder, get_embedder
from tunesmith.rag.store import SqliteStore

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
RRF_K = 60
# Each side contributes this many candidates (at least) to the fusion.
FUSION_DEPTH = 50


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk. ``score`` is the fused RRF score (hybrid), cosine (dense) or BM25 (bm25)."""

    text: str
    source: str
    score: float
    chunk_id: int
    heading: str = ""
    location: str = ""


class Index:
    """An opened index: the store, its embedder, and lazily loaded vectors and BM25."""

    def __init__(self, path: Path, store: SqliteStore, embedder: Embedder) -> None:
        self.path = path
        self.store = store
        self.embedder = embedder
        self._dense: tuple[np.ndarray, np.ndarray] | None = None
        self._bm25: Bm25Index | None = None

    @property
    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        if self._dense is None:
            dim = int(self.store.meta("dim") or self.embedder.dim)
            self._dense = self.store.all_vectors(dim)
        return self._dense

    @property
    def bm25(self) -> Bm25Index:
        if self._bm25 is None:
            self._bm25 = load_bm25(self.store, self.path)
        return self._bm25

    def dense_search(self, query_vec: np.ndarray, n: int) -> list[tuple[int, float]]:
        ids, matrix = self.dense
        if len(ids) == 0:
            return []
        scores = matrix @ query_vec
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def cosine(self, query: str, chunk_ids: list[int]) -> list[float]:
        """Cosine similarity of the query to given chunks (used to judge whether context supports an answer)."""
        ids, matrix = self.dense
        pos = {int(c): i for i, c in enumerate(ids)}
        q = self.embedder.encode([query])[0]
        return [float(matrix[pos[c]] @ q) for c in chunk_ids]

    def close(self) -> None:
        self.store.close()


def open_index(path: Path | str, embedder: Embedder | str | None = None) -> Index:
    """Open an index folder built by ``tunesmith rag index``, or a ``postgresql://`` URL (rag/pgstore.py),
    for reading (safe while a writer runs)."""
    from tunesmith.rag.pgstore import PgIndex, PgStore, is_server_url  # it imports this module

    if is_server_url(path):
        store, index_cls = PgStore(str(path)), PgIndex
    else:
        path = Path(path)
        store, index_cls = SqliteStore(path), Index
    built_with = store.meta("embedder_id")
    if built_with is None:
        store.close()
        raise TunesmithError(
            f"The index at {path} is empty (no document was indexed).",
            "Run `tunesmith rag index DOCS... --index " + str(path) + "`.",
        )
    emb = (
        get_embedder(embedder or store.meta("embedder_name") or "minilm")
        if not isinstance(embedder, Embedder)
        else embedder
    )
    if emb.id != built_with:
        name = store.meta("embedder_name")
        store.close()
        raise TunesmithError(
            f"The index at {path} was built with embedder {built_with!r}, not {emb.id!r}: its vectors cannot be "
            "compared with this embedder's.",
            f"Query with the embedder it was built with ({name}), or rebuild it with the new one (rag index --rebuild).",
        )
    return index_cls(path, store, emb)  # type: ignore[arg-type]


def retrieve(
    index: Index, query: str, k: int = 5, mode: Mode = "hybrid", rerank: Any | None = None
) -> list[Passage]:
    """The top ``k`` passages for ``query``. ``rerank``: a sentence-transformers CrossEncoder (or its folder)
    that re-scores the fused candidates; the passage score is then the cross-encoder's."""
    if mode not in MODES:
        raise TunesmithError(f"Unknown retrieval mode {mode!r}.", f"Use one of {', '.join(MODES)}.")
    if k < 1:
        raise TunesmithError(f"k must be at least 1 (got {k}).", "Pass -k 5, for example.")
    if not query.strip():
        raise TunesmithError("The query is empty.", 'Ask a question, e.g. "How do I reset my password?"')
    depth = max(FUSION_DEPTH, 4 * k) if (mode == "hybrid" or rerank is not None) else k
    ranked: list[tuple[int, float]]
    if mode == "dense":
        ranked = index.dense_search(index.embedder.encode([query])[0], depth)
    elif mode == "bm25":
        ranked = index.bm25.search(query, depth)
    else:
        dense = index.dense_search(index.embedder.encode([query])[0], depth)
        lexical = index.bm25.search(query, depth)
        ranked = rrf_fuse([[c for c, _ in dense], [c for c, _ in lexical]])
    if rerank is not None:
        ranked = _rerank(index, query, ranked[:depth], rerank)
    ranked = ranked[:k]
    rows = index.store.chunks([c for c, _ in ranked])
    return [
        Passage(rows[c].text, rows[c].source, s, c, rows[c].heading, rows[c].location)
        for c, s in ranked
        if c in rows
    ]


def rrf_fuse(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of ranked id lists: ``score(d) = sum 1 / (k + rank_i(d))``, ranks from 1.
    Ties keep the order of first appearance (dense before BM25)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def load_reranker(name: str | Path) -> Any:
    """Load a local sentence-transformers CrossEncoder folder (never downloaded): a sequence-classification
    model with one relevance logit, or two labels where the second means relevant."""
    path = Path(name).expanduser()
    if not path.is_dir():
        raise TunesmithError(
            f"Re-ranker {str(name)!r} is not a local cross-encoder folder.",
            "Pass a folder saved with CrossEncoder.save() (models are never downloaded).",
        )
    _check_cross_encoder_folder(path)
    from sentence_transformers import CrossEncoder

    try:
        model = CrossEncoder(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError/... for a broken folder
        raise TunesmithError(
            f"Re-ranker {path} could not be loaded as a cross-encoder: {type(exc).__name__}: {exc}",
            "Pass a folder saved with CrossEncoder.save() (config.json, weights and tokenizer files).",
        ) from None
    if model.num_labels not in (1, 2):
        raise TunesmithError(
            f"Re-ranker {path} has {model.num_labels} output labels; a re-ranker scores relevance with 1 "
            "(or 2: not relevant, relevant).",
            "Use a cross-encoder trained for passage ranking (e.g. an ms-marco cross-encoder saved locally).",
        )
    return model


def _check_cross_encoder_folder(path: Path) -> None:
    """Refuse an embedder (or other model) folder before CrossEncoder silently adds a random head to it."""
    import json

    config = path / "config.json"
    if not config.is_file():
        raise TunesmithError(
            f"Re-ranker {path} has no config.json, so it is not a saved cross-encoder.",
            "Pass a folder saved with CrossEncoder.save() (models are never downloaded).",
        )
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise TunesmithError(
            f"Re-ranker {path}: config.json is not a JSON object.",
            "Re-save the model with CrossEncoder.save().",
        ) from None
    if archs and not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise TunesmithError(
            f"Re-ranker {path} holds a {archs[0]} model, not a cross-encoder (a sequence-classification "
            "model that scores question-passage pairs); loading it would re-rank with a random head.",
            "An embedder folder (e.g. MiniLM) cannot re-rank; pass a cross-encoder folder, or drop --rerank.",
        )


def _rerank(
    index: Index, query: str, ranked: list[tuple[int, float]], rerank: Any
) -> list[tuple[int, float]]:
    model = load_reranker(rerank) if isinstance(rerank, str | Path) else rerank
    rows = index.store.chunks([c for c, _ in ranked])
    ids = [c for c, _ in ranked if c in rows]
    if not ids:
        return []
    pairs = [(query, rows[c].text) for c in ids]
    # With two labels the softmax probability of "relevant" ranks; the raw second logit alone would not.
    scores = np.asarray(model.predict(pairs, show_progress_bar=False, apply_softmax=True), dtype=np.float64)
    if scores.ndim > 1:
        scores = scores[:, -1]
    order = np.argsort(-scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order]
