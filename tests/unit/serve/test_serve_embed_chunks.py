"""Embeddings are computed in bounded chunks (the model lock is held per chunk, so a 2,048-input request does
not hold every other one for its whole duration) with the same vectors as one encode call, and a request
whose client went away stops at the next chunk. Real embedded MiniLM."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tunesmith.serve import chat
from tunesmith.serve.engine import Cancelled

pytestmark = pytest.mark.unit


def test_chunked_embeddings_equal_one_encode_and_count_every_token() -> None:
    embedder = chat._Embedder()
    texts = [
        f"sentence number {i} about {'cats' if i % 2 else 'the sea'}" for i in range(chat.EMBED_CHUNK * 2 + 5)
    ]
    vectors, n_tokens = embedder.encode(texts)
    model = embedder._model
    whole = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert len(vectors) == len(texts)
    assert np.allclose(np.array(vectors), whole, atol=1e-5)
    assert n_tokens == sum(len(model.tokenizer(t)["input_ids"]) for t in texts)


def test_a_cancelled_embeddings_request_stops_between_chunks() -> None:
    embedder = chat._Embedder()
    embedder.encode(["warm up"])
    calls: list[int] = []
    real = embedder._model.encode
    cancel = threading.Event()

    def counting(part, **kw):  # noqa: ANN001, ANN003, ANN202 - counts chunks, cancels after the first
        calls.append(len(part))
        cancel.set()
        return real(part, **kw)

    embedder._model.encode = counting
    with pytest.raises(Cancelled):
        embedder.encode(["x"] * (chat.EMBED_CHUNK * 4), cancel)
    assert calls == [chat.EMBED_CHUNK]  # one chunk ran, three never did
