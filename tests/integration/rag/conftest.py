"""RAG fixtures: a small document corpus and a tiny second embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
from rag_helpers import write_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT saved as a sentence-transformers folder: 'an index built with another embedder'."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunesmith.models.load import minilm_dir

    d = tmp_path_factory.mktemp("tiny-embedder")
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    BertModel(cfg).save_pretrained(d / "hf")
    tok.save_pretrained(d / "hf")
    st = SentenceTransformer(
        modules=[models.Transformer(str(d / "hf"), max_seq_length=128), models.Pooling(32)], device="cpu"
    )
    st.save(str(d / "st"))
    return d / "st"
