"""Retrieval modes on a real index, the public API, RAFT rows, and the `tunesmith rag` CLI end to end."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.errors import TunesmithError
from tunesmith.rag import build_rag_messages, open_index, retrieve
from tunesmith.rag.index import index_documents
from tunesmith.rag.raft import add_context

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from rag_helpers import write_corpus

    root = tmp_path_factory.mktemp("rag")
    docs = write_corpus(root / "docs")
    index_documents([docs], root / "idx")
    return root


def test_each_mode_finds_the_right_document(built):
    index = open_index(built / "idx")
    cases = {
        "What is the capital city of Freedonia?": "geo/freedonia.txt",
        "How much is the pro plan per month?": "pricing.html",
        "How long until my money comes back after a refund request?": "faq.jsonl",
        "XJ-42": "codes.txt",
    }
    for question, source in cases.items():
        for mode in ("dense", "bm25", "hybrid"):
            top = retrieve(index, question, k=3, mode=mode)
            assert source in [p.source for p in top], (mode, question, [p.source for p in top])
        assert retrieve(index, question, k=1, mode="hybrid")[0].source == source
    dense = retrieve(index, "XJ-42", k=5, mode="dense")
    hybrid = retrieve(index, "XJ-42", k=5, mode="hybrid")
    assert [p.score for p in dense] == sorted([p.score for p in dense], reverse=True)
    assert all(0 < p.score <= 2 / 61 for p in hybrid)  # RRF scores of two lists with k=60


def test_bm25_side_index_is_rebuilt_when_missing(built, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built / "idx", copy)
    shutil.rmtree(copy / "bm25")
    assert retrieve(open_index(copy), "XJ-42 firmware", k=1, mode="bm25")[0].source == "codes.txt"


def test_open_index_errors_are_clear(built, tmp_path):
    with pytest.raises(TunesmithError, match="No RAG index") as err:
        open_index(tmp_path / "nope")
    assert "rag index" in err.value.hint
    index = open_index(built / "idx")
    with pytest.raises(TunesmithError, match="Unknown retrieval mode"):
        retrieve(index, "q", mode="sparse")  # type: ignore[arg-type]
    with pytest.raises(TunesmithError, match="query is empty"):
        retrieve(index, "   ")


def test_raft_rows_mix_retrieved_passages_and_distractors(built):
    rows = [
        {"messages": [{"role": "system", "content": "You are Widget Support."},
                      {"role": "user", "content": "What does the pro plan cost?"},
                      {"role": "assistant", "content": "The pro plan costs 42 euros per month."}]},
        {"prompt": "What is the capital of Freedonia?", "completion": "Fredville."},
    ]  # fmt: skip
    out = add_context(rows, built / "idx", k=2, distractors=2, seed=0)
    assert out == add_context(rows, built / "idx", k=2, distractors=2, seed=0)  # seeded
    first = out[0]
    msgs = first["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"].startswith("You are Widget Support.")
    assert re.findall(r"^\[(\d)\] \(", msgs[1]["content"], flags=re.M) == ["1", "2", "3", "4"]
    assert len(first["rag_sources"]) == 4 and "pricing.html" in first["rag_sources"]
    n = first["rag_sources"].index("pricing.html") + 1
    assert msgs[2]["content"] == f"The pro plan costs 42 euros per month [{n}]."  # cites the right passage
    # at least one distractor comes from a document that was not retrieved for this question
    retrieved = {p.source for p in retrieve(open_index(built / "idx"), "What does the pro plan cost?", k=2)}
    assert set(first["rag_sources"]) - retrieved
    assert out[1]["messages"][1]["content"].endswith("Question: What is the capital of Freedonia?")
    with pytest.raises(TunesmithError, match="Row 1"):
        add_context([{"text": "no"}], built / "idx")


def test_cli_index_query_eval(built, tmp_path):
    from rag_helpers import write_corpus

    runner = CliRunner()
    docs = write_corpus(tmp_path / "docs")
    (docs / "empty.txt").write_text("")
    idx = tmp_path / "idx"
    res = runner.invoke(app, ["rag", "index", str(docs), "--index", str(idx)])
    assert res.exit_code == 0, res.output
    assert "6 documents" in res.output and "empty.txt is empty" in res.output
    res = runner.invoke(app, ["rag", "index", str(docs), "--index", str(idx), "--json"])
    assert json.loads(res.stdout)["unchanged"] == 6
    res = runner.invoke(app, ["rag", "query", str(idx), "capital of Freedonia", "-k", "2", "--json"])
    passages = json.loads(res.stdout)
    assert (
        len(passages) == 2
        and passages[0]["source"] == "geo/freedonia.txt"
        and "Fredville" in passages[0]["text"]
    )
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "What is the capital of Freedonia?", "answer": "Fredville", "source": "geo/freedonia.txt"}\n'
        '{"question": "How much does the pro plan cost?", "answer": "42 euros", "source": "pricing.html"}\n'
        '{"question": "What does error QP-7 mean?", "answer": "the wheel is jammed"}\n'
    )
    res = runner.invoke(app, ["rag", "eval", str(idx), "--qa", str(qa), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "ev" / "rag_eval.json").read_text())
    assert set(result) == {"n", "retrieval", "answers"} and result["n"] == 3 and result["answers"] == {}
    for mode in ("dense", "bm25", "hybrid"):
        assert set(result["retrieval"][mode]) == {"recall@1", "recall@5", "recall@10", "mrr"}
    assert result["retrieval"]["hybrid"]["recall@5"] == 1.0
    details = [json.loads(x) for x in (tmp_path / "ev" / "rag_eval_details.jsonl").read_text().splitlines()]
    for mode in ("dense", "bm25", "hybrid"):  # the summary is the mean over the per-question ranks
        ranks = [d[f"rank_{mode}"] for d in details]
        assert result["retrieval"][mode]["recall@1"] == pytest.approx(sum(r == 1 for r in ranks) / 3)
    mrr = sum(1 / d["rank_hybrid"] for d in details if d["rank_hybrid"]) / 3
    assert result["retrieval"]["hybrid"]["mrr"] == pytest.approx(mrr)


def test_cli_bad_input_is_a_clear_error(built, tmp_path):
    runner = CliRunner()
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "q", "answer": "a"}\n{"question": ""}\nnot json\n')
    res = runner.invoke(
        app, ["rag", "eval", str(built / "idx"), "--qa", str(qa), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "qa.jsonl:2: missing or empty question and answer" in res.output
    assert "qa.jsonl:3: not valid JSON" in res.output
    res = runner.invoke(app, ["rag", "query", str(built / "idx"), "q", "--mode", "fuzzy"])
    assert res.exit_code != 0 and "--mode 'fuzzy'" in res.output
    res = runner.invoke(app, ["rag", "index", str(tmp_path / "missing"), "--index", str(tmp_path / "i")])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_rag_ask_with_the_tiny_model_refuses_unsupported_text(built, tiny_model_dir):
    """The tiny random model writes noise: the support check must turn it into 'not in the documents'."""
    res = CliRunner().invoke(app, ["rag", "ask", str(built / "idx"), "What is the capital of Freedonia?",
                                   "--model", str(tiny_model_dir), "--max-tokens", "12", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["answer"] == "Not in the documents." and not out["grounded"]
    assert out["passages"][0]["source"] == "geo/freedonia.txt"
    assert out["raw"] or "found no answer" in out["reason"]


def test_messages_feed_the_shared_generation_path(built, tiny_model_dir):
    from tunesmith.models.generate import GenerationSettings, generate
    from tunesmith.models.inference import load_for_inference

    model, tok = load_for_inference(str(tiny_model_dir))
    passages = retrieve(open_index(built / "idx"), "pro plan price", k=2)
    msgs = build_rag_messages("What does the pro plan cost?", passages)
    gen = generate(model, tok, [msgs], GenerationSettings(max_tokens=4))[0]
    assert gen.prompt_tokens > 50 and gen.completion_tokens >= 1
