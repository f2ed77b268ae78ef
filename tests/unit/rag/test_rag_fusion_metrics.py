"""Hand-computed cases: reciprocal-rank fusion, BM25 tokenisation, recall@k / MRR, EM / F1, citations."""

from __future__ import annotations

import pytest

from tunesmith.rag.answer import (
    NOT_IN_DOCUMENTS,
    build_rag_messages,
    check_answer,
    cite,
    is_not_in_documents,
    support,
)
from tunesmith.rag.bm25 import tokenize
from tunesmith.rag.evaluate import (
    QAItem,
    answer_metrics,
    exact_match,
    first_relevant_rank,
    retrieval_metrics,
    token_f1,
)
from tunesmith.rag.retrieve import Passage, rrf_fuse

pytestmark = pytest.mark.unit


def P(text: str, source: str = "doc.md", cid: int = 0) -> Passage:
    return Passage(text=text, source=source, score=0.0, chunk_id=cid)


# --------------------------------------------------------------------------- fusion


def test_rrf_hand_computed():
    # dense: a b c ; bm25: c d a  (k = 60)
    fused = dict(rrf_fuse([["a", "b", "c"], ["c", "d", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["d"] == pytest.approx(1 / 62)
    order = [d for d, _ in rrf_fuse([["a", "b", "c"], ["c", "d", "a"]], k=60)]
    assert order == ["a", "c", "b", "d"]  # ties keep first appearance: a before c, b before d


def test_rrf_rewards_agreement_over_a_single_first_place():
    order = [d for d, _ in rrf_fuse([["x", "both"], ["y", "both"]], k=1)]
    # both: 1/3 + 1/3 = 0.667 beats x: 1/2 and y: 1/2
    assert order[0] == "both"


def test_bm25_tokenizer_drops_stopwords_and_stems_plurals():
    assert tokenize("The Widgets are resetting, and the widget resets!") == [
        "widget",
        "reset",
        "widget",
        "reset",
    ]
    assert tokenize("What is it?") == []


# --------------------------------------------------------------------------- retrieval metrics


def test_recall_and_mrr_hand_computed():
    # first relevant ranks of 4 questions: 1, 3, none, 7 ; ks = 1, 5, 10
    m = retrieval_metrics([1, 3, None, 7], [1, 5, 10])
    assert m == pytest.approx(
        {"recall@1": 0.25, "recall@5": 0.5, "recall@10": 0.75, "mrr": (1 + 1 / 3 + 0 + 1 / 7) / 4}
    )
    # MRR only counts ranks within max(k)
    assert retrieval_metrics([7], [1, 5])["mrr"] == 0.0


def test_relevance_by_source_path_or_name_else_by_answer_string():
    ps = [P("Refunds take 14 days.", "faq/refunds.md"), P("Shipping is free.", "faq/shipping.md")]
    assert first_relevant_rank(ps, QAItem(1, "q", "whatever", "faq/shipping.md")) == 2
    assert first_relevant_rank(ps, QAItem(1, "q", "whatever", "shipping.md")) == 2
    assert first_relevant_rank(ps, QAItem(1, "q", "whatever", "ping.md")) is None
    assert first_relevant_rank(ps, QAItem(1, "q", "14 days", None)) == 1
    assert first_relevant_rank(ps, QAItem(1, "q", "30 days", None)) is None


# --------------------------------------------------------------------------- answer metrics


def test_exact_match_and_token_f1_hand_computed():
    assert exact_match("The Eiffel Tower! [1]", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    # pred "red big ball" vs ref "big red car": common 2 -> P 2/3, R 2/3, F1 2/3
    assert token_f1("red big ball", "big red car") == pytest.approx(2 / 3)
    # pred "14 days" vs ref "within 14 days": P 1, R 2/3 -> F1 0.8
    assert token_f1("14 days [2]", "within 14 days") == pytest.approx(0.8)
    assert token_f1(NOT_IN_DOCUMENTS, "14 days") == 0.0
    assert exact_match(NOT_IN_DOCUMENTS, "Not in the documents") == 1.0


def test_answer_metrics_hand_computed():
    ps = [P("Refunds take 14 days to process.")]
    items = [QAItem(1, "q1", "14 days", None), QAItem(2, "q2", "free", None), QAItem(3, "q3", "blue", None)]
    answers = [
        check_answer(
            "Refunds take 14 days.", ps
        ),  # grounded, faithful, F1 vs "14 days" = 2*(2/3*1)/(5/3) = 0.8
        check_answer("Not in the documents.", ps),  # not answered
        check_answer("Refunds take 14 days to process, sky.", ps, min_support=0.0),  # answered, support 5/6
    ]
    m = answer_metrics(answers, items)
    assert m["answered"] == 2 and m["not_in_documents"] == 1
    assert m["exact_match"] == 0.0
    f1_1 = 2 * (2 / 4) * 1 / (2 / 4 + 1)  # "refunds take 14 days" vs "14 days": P 2/4, R 1
    assert m["token_f1"] == pytest.approx(f1_1 / 3)
    # faithfulness: mean raw-answer support over attempted answers: (4/4 + 5/6) / 2 (refusal not counted)
    assert m["attempted"] == 2 and m["faithfulness"] == pytest.approx((1 + 5 / 6) / 2)


# --------------------------------------------------------------------------- citations and grounding


def test_cite_drops_bad_numbers_and_adds_missing_citations():
    ps = [P("The pro plan costs 42 euros per month."), P("Refunds take 14 days.")]
    text, cited = cite("Refunds take 14 days [7]. The pro plan costs 42 euros.", ps)
    assert text == "Refunds take 14 days [2]. The pro plan costs 42 euros [1]."
    assert cited == [1, 2]
    kept, cited = cite("It costs 42 euros [1].", ps)
    assert kept == "It costs 42 euros [1]." and cited == [1]


def test_unsupported_answer_becomes_not_in_the_documents():
    ps = [P("The pro plan costs 42 euros per month.")]
    made_up = check_answer("The enterprise tier includes unlimited llamas and a castle.", ps)
    assert not made_up.grounded and made_up.text == NOT_IN_DOCUMENTS
    assert (
        "no sentence" in made_up.reason
        and made_up.raw.startswith("The enterprise")
        and made_up.support == 0.0
    )
    refusal = check_answer("I'm sorry, the passages do not contain that information.", ps)
    assert not refusal.grounded and refusal.text == NOT_IN_DOCUMENTS
    good = check_answer("The pro plan costs 42 euros per month.", ps)
    assert (
        good.grounded and good.text == "The pro plan costs 42 euros per month [1]." and good.citations == [1]
    )
    # a made-up sentence after a supported one is dropped, not shown with a citation
    mixed = check_answer(
        "The pro plan costs 42 euros per month. It also includes a free castle in Spain.", ps
    )
    assert (
        mixed.text == "The pro plan costs 42 euros per month [1]."
        and "1 unsupported sentence(s) dropped" in mixed.reason
    )
    assert mixed.support == pytest.approx(
        7 / 12
    )  # pro plan cost 42 euro per month | also include free castle spain


def test_support_is_share_of_content_words_found():
    assert support("pro plan costs 42 euros", ["The pro plan costs 42 euros."]) == 1.0
    assert support("pro plan costs 99 dollars", ["The pro plan costs 42 euros."]) == pytest.approx(3 / 5)
    assert is_not_in_documents("That is not in the provided context.")
    assert not is_not_in_documents("The documents say it costs 42 euros.")


def test_build_rag_messages_numbers_passages_with_sources():
    ps = [
        Passage("Text one.", "a.md", 0.5, 1, "H", "line 3"),
        Passage("Text two.", "b.pdf", 0.4, 2, "", "page 2"),
    ]
    msgs = build_rag_messages("What?", ps, system_prompt="You are Support Bot.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert (
        msgs[0]["content"].startswith("You are Support Bot.") and "Not in the documents" in msgs[0]["content"]
    )
    user = msgs[1]["content"]
    assert "[1] (a.md, line 3)\nText one." in user and "[2] (b.pdf, page 2)\nText two." in user
    assert user.endswith("Question: What?")
