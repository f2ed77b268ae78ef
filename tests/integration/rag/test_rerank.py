"""`--rerank`: a tiny from-config cross-encoder (random BERT + MiniLM's tokenizer, saved to a folder) is
loaded from that folder, re-orders the fused candidates by its own scores, keeps k, and a folder that is not
a cross-encoder is one clear error (message + hint, no traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rag_helpers import write_corpus
from typer.testing import CliRunner

from tunesmith.cli.main import app, main
from tunesmith.errors import TunesmithError
from tunesmith.models.load import minilm_dir
from tunesmith.rag import open_index, retrieve
from tunesmith.rag.index import index_documents
from tunesmith.rag.retrieve import FUSION_DEPTH

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of Freedonia?"


def build_tiny_cross_encoder(out: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A random BertForSequenceClassification (hidden 32, 2 layers) with the embedded MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(seed)
    # initializer_range 0.5 (not 0.02) spreads the random scores, so the order is never a near-tie.
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=num_labels,
                     initializer_range=0.5)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rerank")
    index_documents([write_corpus(root / "docs")], root / "idx")
    return root / "idx"


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce"))


def _expected(
    index_dir: Path, ce_dir: Path, mode: str, k: int, **predict: object
) -> tuple[list[int], list[float]]:
    """Chunk ids and scores of the top k when the candidates rerank sees are sorted by CrossEncoder.predict."""
    from sentence_transformers import CrossEncoder

    # The corpus has 6 chunks, fewer than FUSION_DEPTH: this is every candidate the re-ranker is given.
    candidates = retrieve(open_index(index_dir), QUESTION, k=FUSION_DEPTH, mode=mode)  # type: ignore[arg-type]
    assert len(candidates) == 6
    scores = CrossEncoder(str(ce_dir), device="cpu").predict(
        [(QUESTION, p.text) for p in candidates], show_progress_bar=False, **predict
    )
    scores = scores[:, -1] if scores.ndim > 1 else scores
    assert len(set(np.round(scores, 6))) == len(scores), "near-tied scores would make the order arbitrary"
    order = np.argsort(-scores, kind="stable")[:k]
    unreranked = [p.chunk_id for p in candidates[:k]]
    expected = [candidates[i].chunk_id for i in order]
    assert expected != unreranked, "the cross-encoder must change the order, or this test could not fail"
    return expected, [float(scores[i]) for i in order]


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_rerank_orders_the_fused_candidates_by_cross_encoder_scores(index_dir, cross_encoder_dir, mode):
    from sentence_transformers import CrossEncoder

    expected, scores = _expected(index_dir, cross_encoder_dir, mode, k=3)
    index = open_index(index_dir)
    got = retrieve(index, QUESTION, k=3, mode=mode, rerank=cross_encoder_dir)  # type: ignore[arg-type]
    assert [p.chunk_id for p in got] == expected
    assert [p.score for p in got] == pytest.approx(scores)  # the passage score is the cross-encoder's
    loaded = CrossEncoder(str(cross_encoder_dir), device="cpu")  # an already-loaded model works the same
    assert [p.chunk_id for p in retrieve(index, QUESTION, k=3, mode=mode, rerank=loaded)] == expected  # type: ignore[arg-type]


def test_cli_query_rerank_keeps_k_in_cross_encoder_order(index_dir, cross_encoder_dir):
    expected, _ = _expected(index_dir, cross_encoder_dir, "hybrid", k=4)
    res = CliRunner().invoke(app, ["rag", "query", str(index_dir), QUESTION, "-k", "4", "--json",
                                   "--rerank", str(cross_encoder_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [p["chunk_id"] for p in json.loads(res.stdout)] == expected


def test_two_label_head_ranks_by_the_probability_of_relevant(index_dir, tmp_path):
    """With 2 labels the order is softmax P(relevant), which can differ from the raw 'relevant' logit."""
    ce_dir = build_tiny_cross_encoder(tmp_path / "ce2", num_labels=2)
    expected, scores = _expected(index_dir, ce_dir, "hybrid", k=3, apply_softmax=True)
    by_logit, _ = _expected(index_dir, ce_dir, "hybrid", k=3)
    assert expected != by_logit, "seed 0 gives a case where the two orders differ"
    got = retrieve(open_index(index_dir), QUESTION, k=3, rerank=ce_dir)
    assert [p.chunk_id for p in got] == expected
    assert [p.score for p in got] == pytest.approx(scores) and all(0 < s < 1 for s in scores)


def _broken_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    not_a_model = write_corpus(tmp_path / "docs")
    broken = tmp_path / "broken"  # a classification config, but no weights and no tokenizer
    broken.mkdir()
    (broken / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    three = build_tiny_cross_encoder(tmp_path / "nli", num_labels=3)
    return {
        "missing": (tmp_path / "nope", "is not a local cross-encoder folder"),
        "not a model": (not_a_model, "has no config.json"),
        "an embedder": (minilm_dir(), "holds a BertModel model, not a cross-encoder"),
        "broken": (broken, "could not be loaded as a cross-encoder"),
        "three labels": (three, "has 3 output labels"),
    }


def test_a_bad_rerank_folder_is_one_clear_error(index_dir, tmp_path, capsys, monkeypatch):
    for what, (folder, message) in _broken_folders(tmp_path).items():
        with pytest.raises(TunesmithError, match=message) as err:
            retrieve(open_index(index_dir), QUESTION, rerank=folder)
        assert err.value.hint, what
        monkeypatch.setattr(
            sys, "argv", ["tunesmith", "rag", "query", str(index_dir), QUESTION, "--rerank", str(folder)]
        )
        with pytest.raises(SystemExit) as exit_:
            main()
        out, err_text = capsys.readouterr()
        assert exit_.value.code == 1, (what, out, err_text)
        assert "Error: Re-ranker" in err_text and message in err_text and "Hint:" in err_text, (
            what,
            err_text,
        )
        assert "Traceback" not in err_text + out, what
