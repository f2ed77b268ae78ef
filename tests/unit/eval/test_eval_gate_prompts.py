"""Release gate rules, few-shot selection, rewording and the HTML renderer, without any language model."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.eval.gate import evaluate_gate, parse_rules
from tunesmith.eval.html import render_html
from tunesmith.eval.prompts import few_shot_messages, input_text, reword, select_shots
from tunesmith.results.eval import Candidate, eval_report_from_dict

pytestmark = pytest.mark.unit

RAW = {
    "base:few-shot": {
        "metrics": {"accuracy": 0.5, "label_scoring": {"accuracy": 0.6}},
        "latency_ms": {"p50": 100.0, "p95": 180.0, "mean": 120.0},
    },
    "finetuned": {
        "metrics": {"accuracy": 0.92, "label_scoring": {"accuracy": 0.95}},
        "latency_ms": {"p50": 40.0, "p95": 55.0, "mean": 45.0},
    },
}
CANDS = {k: Candidate.model_validate(v) for k, v in RAW.items()}


def test_gate_rules_pass_fail_and_compare_candidates():
    gate = evaluate_gate(
        [
            "finetuned.accuracy>=0.9",
            "finetuned.accuracy>base:few-shot.accuracy",
            "finetuned.latency_ms.p95<50",
            "base:few-shot.label_scoring.accuracy==0.6",
        ],
        CANDS,
    )
    assert [r.passed for r in gate.rules] == [True, True, False, True]
    assert gate.passed is False
    assert gate.rules[2].left == 55.0 and "FAILED" in gate.rules[2].message
    empty = evaluate_gate([], CANDS)
    assert empty.passed is True and empty.rules == []


def test_gate_unknown_names_fail_with_what_exists():
    gate = evaluate_gate(["finetuned.acc>=0.9", "base:rag.accuracy>0"], CANDS)
    assert gate.passed is False
    assert "no metric 'acc'" in gate.rules[0].message and "accuracy" in gate.rules[0].message
    assert "no candidate" in gate.rules[1].message and "base:few-shot" in gate.rules[1].message


@pytest.mark.parametrize("rule", ["finetuned.accuracy", "finetuned.accuracy=>0.9", "accuracy>0.9", ""])
def test_malformed_rules_are_refused_up_front(rule):
    with pytest.raises(TunesmithError) as exc:
        parse_rules([rule])
    assert repr(rule) in exc.value.message and exc.value.hint


ROWS = [
    {"text": "I was charged twice this month", "label": "billing"},
    {"text": "The app crashes when I open settings", "label": "technical"},
    {"text": "Please reset my password", "label": "account"},
    {"text": "Refund the double charge on my card", "label": "billing"},
    {"text": "Sync stopped working after the update", "label": "technical"},
]


def test_few_shot_similar_picks_nearest_and_never_the_query_itself():
    queries = [{"text": "I got charged two times", "label": "billing"}, ROWS[2]]
    shots = select_shots(queries, ROWS, "classification", k=2, selection="similar")
    assert {s["label"] for s in shots[0]} == {"billing"}  # both charge tickets are the nearest
    assert ROWS[2] not in shots[1]  # the exact input is never shown as its own example
    msgs = few_shot_messages(queries[0], "classification", "Route it.", shots[0])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[-1]["content"] == "I got charged two times" and msgs[2]["content"] == "billing"


def test_few_shot_random_is_seeded_and_needs_a_pool():
    a = select_shots(ROWS[:2], ROWS, "classification", 2, "random", seed=1)
    assert a == select_shots(ROWS[:2], ROWS, "classification", 2, "random", seed=1)
    assert all(ROWS[i] not in a[i] for i in range(2))
    with pytest.raises(TunesmithError, match="needs training examples"):
        select_shots(ROWS, [], "classification", 2, "random")


def test_reword_keeps_meaning_and_answer():
    for seed in range(6):
        v = reword(ROWS[1], "classification", seed)
        assert v["label"] == "technical" and v["text"] != ROWS[1]["text"]
        assert "crashes when I open settings" in " ".join(v["text"].split())
    chat = {"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi"}]}
    assert input_text(reword(chat, "chat", 0), "chat") != "Hello there"


def test_html_escapes_text_and_draws_every_section():
    report = {
        "task": "classification", "n": 2, "data": "h.jsonl",
        "candidates": {k: {**v, "metrics": {**v["metrics"], "macro_f1": 0.5, "confusion": {"labels": ["a", "b"], "columns": ["a", "b", "(invalid)"], "matrix": [[1, 0, 0], [0, 1, 0]]}}} for k, v in RAW.items()},
        "gate": evaluate_gate(["finetuned.accuracy>=0.9"], CANDS).model_dump(),
        "training": {"loss": [[1, 2.0], [2, 1.0]], "val_loss": [[2, 1.5]]},
        "lengths": {"finetuned": [2, 2, 3]},
        "scoring": {"few_shot": "similar"},
        "examples": [{"index": 0, "input": "<script>alert(1)</script>", "reference": "a", "answers": {"finetuned": "a", "base:few-shot": "b"}, "correct": {"finetuned": True, "base:few-shot": False}}],
    }  # fmt: skip
    html = render_html(eval_report_from_dict(report))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<svg") == 5  # bars, 2 confusion matrices, loss curve, 1 histogram
    assert "PASSED" in html and "validation loss" in html
