"""The embedded SmolLM2 answering over a real index: grounded answers with citations, refusals, rag eval."""

from __future__ import annotations

import json

import pytest

from tunesmith.rag import NOT_IN_DOCUMENTS, open_index
from tunesmith.rag.answer import ask, make_generator
from tunesmith.rag.evaluate import QAItem, make_batch_generator, run_rag_eval
from tunesmith.rag.index import index_documents

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def smol():
    from tunesmith.models.inference import load_for_inference

    return load_for_inference("smollm2-135m-instruct", dtype="float32")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from rag_helpers import write_corpus

    root = tmp_path_factory.mktemp("real")
    index_documents([write_corpus(root / "docs")], root / "idx")
    return open_index(root / "idx")


def test_answer_with_a_citation_to_the_right_document(smol, index):
    answer = ask(index, "What is the capital of Freedonia?", make_generator(*smol, max_tokens=40), k=3)
    assert answer.grounded, answer
    assert "Fredville" in answer.text
    assert answer.citations and all(
        answer.passages[n - 1].source == "geo/freedonia.txt" for n in answer.citations
    )


def test_question_outside_the_documents_gets_not_in_the_documents(smol, index):
    answer = ask(index, "Who won the 1998 football world cup?", make_generator(*smol, max_tokens=40), k=3)
    assert answer.text == NOT_IN_DOCUMENTS and not answer.grounded


def test_rag_eval_with_a_model_scores_answers(smol, index, tmp_path):
    items = [
        QAItem(1, "What is the capital of Freedonia?", "Fredville", "geo/freedonia.txt"),
        QAItem(3, "Who won the 1998 football world cup?", "Not in the documents", None),
    ]
    result = run_rag_eval(
        index, items, [1, 5], tmp_path, generate_many=make_batch_generator(*smol, max_tokens=24), answer_k=3
    )
    a = result["answers"]
    assert a["n"] == 2 and a["not_in_documents"] == 1 and a["answered"] == 1 and a["attempted"] == 1
    # the refusal matches its reference exactly (EM 1); the Fredville answer has F1 > 0 but is a sentence
    assert 0.5 <= a["exact_match"] < 1 and 0.5 < a["token_f1"] < 1 and a["faithfulness"] > 0.5
    details = [json.loads(x) for x in (tmp_path / "rag_eval_details.jsonl").read_text().splitlines()]
    assert details[1]["answer"] == NOT_IN_DOCUMENTS  # the football question, refused by retrieval
    assert "Fredville" in details[0]["answer"]
