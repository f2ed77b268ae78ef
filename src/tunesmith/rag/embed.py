"""The embedder: a thin wrapper over sentence-transformers (the embedded ``minilm`` by default).

An index records the embedder's identity (its name + a fingerprint of its config and weight files); opening it
with another embedder is an error, because vectors from two models are not comparable.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.errors import TunesmithError

DEFAULT_EMBEDDER = "minilm"


class Embedder:
    """Encodes texts to L2-normalised float32 vectors (so a dot product is the cosine)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> None:
        from tunesmith.models.load import minilm_dir

        path = minilm_dir() if name == DEFAULT_EMBEDDER else Path(name).expanduser()
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise TunesmithError(
                f"Embedder {name!r} is neither 'minilm' nor a sentence-transformers folder.",
                "Use the embedded 'minilm' or a local folder saved with SentenceTransformer.save().",
            )
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self._model: Any = None
        # Identity without loading the weights: re-indexing an unchanged folder never loads the model.
        label = DEFAULT_EMBEDDER if name == DEFAULT_EMBEDDER else path.name
        self.id = f"{label}:{_fingerprint(path)}"

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # library code never prints ("Loading weights" bar)
            try:
                self._model = SentenceTransformer(str(self.path), device="cpu")
            finally:
                if was_on:
                    hf_logging.enable_progress_bar()
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        """Longest input the embedder reads, special tokens excluded (it silently truncates beyond)."""
        return int(self.model.max_seq_length) - 2

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


@lru_cache(maxsize=4)
def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """One loaded embedder per process (loading MiniLM costs ~1 s; queries should not pay it twice)."""
    return Embedder(name)


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    for fname in ("config.json", "modules.json", "sentence_bert_config.json"):
        f = path / fname
        if f.exists():
            h.update(f.read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())  # weights differ => sizes or config differ, cheaply
    return h.hexdigest()[:12]
