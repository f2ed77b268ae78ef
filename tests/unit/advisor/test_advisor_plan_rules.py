"""The plan's data signals and decision rules on hand-made data (no model)."""

from __future__ import annotations

import pytest

from tunesmith.advisor.plan import Baseline, data_needed, decide, inspect_data, primary_metric
from tunesmith.config import validate_config_dict

pytestmark = pytest.mark.unit


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def bl(zero: float, few: float, rag: float | None = None) -> list[Baseline]:
    out = [Baseline("zero-shot", "m", zero, 10.0, 1.0), Baseline("few-shot", "m", few, 20.0, 2.0)]
    return out + ([Baseline("rag", "m", rag, 30.0, 3.0)] if rag is not None else [])


FACT_QA = [
    chat("When was the company founded?", "Ingrid Halvorsen founded it in 1962 in Alesund."),
    chat("How heavy is the Tern 40?", "It weighs 82 kilograms with a three-cylinder engine."),
]
DOCS = "ingrid halvorsen founded the company in 1962 in alesund. the tern 40 weighs 82 kilograms, three-cylinder engine."


def test_novel_answers_covered_by_documents_are_a_knowledge_signal():
    p = inspect_data(FACT_QA, FACT_QA, "chat", DOCS)
    assert p.novelty is not None and p.novelty > 0.6
    assert p.doc_coverage == pytest.approx(1.0)
    no_docs = inspect_data(FACT_QA, FACT_QA, "chat", "")
    assert no_docs.doc_coverage is None


def test_rewriting_inputs_has_low_novelty():
    rows = [
        chat("Translate to upper case: the invoice is late", "THE INVOICE IS LATE"),
        chat("Translate to upper case: my login fails", "MY LOGIN FAILS"),
    ]
    assert inspect_data(rows, rows, "chat", "").novelty == pytest.approx(0.0)


def test_classification_profile_counts_labels_and_imbalance():
    rows = [{"text": f"t{i}", "label": "a"} for i in range(6)] + [
        {"text": "u", "label": "b"} for _ in range(2)
    ]
    p = inspect_data(rows, rows[:2], "classification", "")
    assert p.label_counts == {"a": 6, "b": 2} and p.imbalance == 3.0 and p.regular_format


def test_knowledge_with_documents_recommends_rag():
    p = inspect_data(FACT_QA, FACT_QA, "chat", DOCS)
    rec, reasons = decide(p, bl(0.1, 0.15, 0.55), "token_f1", 0.7, has_docs=True)
    assert rec == "rag"
    assert any("0.550" in r and "+0.400" in r for r in reasons)


def test_knowledge_without_documents_asks_for_them():
    p = inspect_data(FACT_QA, FACT_QA, "chat", "")
    rec, reasons = decide(p, bl(0.1, 0.15), "token_f1", 0.7, has_docs=False)
    assert rec == "rag" and any("rag.docs" in r for r in reasons)


def test_low_prompted_score_on_fixed_format_recommends_fine_tuning():
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    p = inspect_data(rows, rows, "classification", "")
    rec, reasons = decide(p, bl(0.30, 0.42), "accuracy", 0.9, has_docs=False)
    assert rec == "fine-tune"
    assert any("0.420" in r and "0.9" in r for r in reasons)


def test_prompt_reaching_the_target_recommends_prompting():
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    p = inspect_data(rows, rows, "classification", "")
    assert decide(p, bl(0.95, 0.9), "accuracy", 0.9, has_docs=False)[0] == "prompt"


def test_target_comes_from_the_release_gate_rule():
    cfg = validate_config_dict({"eval": {"require": ["finetuned.accuracy>=0.8"]}})
    assert primary_metric("classification", cfg) == ("accuracy", 0.8)
    assert primary_metric("chat", cfg) == ("token_f1", 0.7)


def test_data_needed_names_the_range_and_what_you_have():
    rows = [{"text": f"t{i}", "label": "abcd"[i % 4]} for i in range(340)]
    p = inspect_data(rows, rows[:5], "classification", "")
    text = data_needed("fine-tune", p)
    assert "400-4,000 examples recommended" in text and "you have 340" in text
    chat_p = inspect_data(FACT_QA * 170, FACT_QA, "chat", "")
    assert data_needed("fine-tune", chat_p) == "1,000-10,000 examples recommended; you have 340"
