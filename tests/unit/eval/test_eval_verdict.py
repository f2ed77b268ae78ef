"""Issue 17: the report's verdict in plain words (which candidate, by how much, on how many examples, what
the gate decided and why) and the gate's rules in words, from real gate evaluations of typed reports."""

from __future__ import annotations

import pytest

from tunesmith.eval.gate import evaluate_gate
from tunesmith.eval.glossary import metric_info
from tunesmith.eval.verdict import gate_sentence, primary_metric, verdict_for, with_verdict
from tunesmith.results.eval import Candidate, EvalReport, read_eval_report, write_eval_report

pytestmark = pytest.mark.unit
HEADLINE = ["accuracy", "macro_f1", "label_scoring.accuracy", "invalid_rate", "consistency"]


def _report(n: int, right: dict[str, int], rules: list[str] = ()) -> EvalReport:
    cands = {
        name: Candidate(
            metrics={"accuracy": k / n, "invalid_rate": 1 - k / n, "label_scoring": {"accuracy": k / n}}
        )
        for name, k in right.items()
    }
    return EvalReport(task="classification", n=n, candidates=cands, headline=HEADLINE,
                      gate=evaluate_gate(list(rules), cands))  # fmt: skip


def test_verdict_names_the_winner_the_margin_and_the_count():
    report = _report(80, {"base:zero-shot": 1, "base:few-shot": 59, "finetuned": 79},
                     ["finetuned.label_scoring.accuracy>base:few-shot.label_scoring.accuracy"])  # fmt: skip
    text = verdict_for(report)
    assert text.startswith(
        "The fine-tuned model gets 79 of 80 hold-out examples right; the best prompt (few-shot) gets 59."
    ), text
    assert "Use the fine-tuned model: 20 more right (+25.0 points)." in text
    assert (
        "Release gate passed: the fine-tuned model's accuracy by label likelihood (0.988) is above "
        "the few-shot prompt's (0.738)." in text
    )
    assert "label_scoring" not in text and "holds" not in text


def test_verdict_says_when_the_prompt_wins_or_it_is_too_close_to_call():
    worse = verdict_for(_report(80, {"base:few-shot": 59, "finetuned": 40}))
    assert "Use the few-shot prompt: it gets 19 more right than the fine-tuned model" in worse, worse
    close = verdict_for(_report(80, {"base:few-shot": 59, "finetuned": 60}))
    assert "Neither is clearly better on 80 hold-out examples: a difference of 1" in close, close
    assert "Use" not in close
    tie = verdict_for(_report(80, {"base:few-shot": 59, "finetuned": 59}))
    assert "Neither is better: both get the same count on 80 hold-out examples." in tie, tie
    prompts_only = verdict_for(_report(40, {"base:zero-shot": 2, "base:few-shot": 30}))
    assert prompts_only.startswith("The few-shot prompt gets 30 of 40 hold-out examples right; the zero-shot")


def test_failed_gate_is_said_in_words_with_the_rules_that_failed():
    report = _report(50, {"base:few-shot": 30, "finetuned": 35},
                     ["finetuned.accuracy>=0.9", "finetuned.accuracy>base:few-shot.accuracy"])  # fmt: skip
    sentence = gate_sentence(report.gate)
    assert sentence == (
        "Release gate FAILED: the fine-tuned model's accuracy (0.700) is below 0.9 (1 other rule held)."
    )
    missing = evaluate_gate(["finetuned.acc>0.5"], report.candidates)
    assert "cannot be checked" in missing.rules[0].words and "accuracy" in missing.rules[0].words
    assert (
        gate_sentence(evaluate_gate([], report.candidates)) == "No release gate rules were set (--require)."
    )


def test_verdict_is_stored_in_report_json_and_old_reports_get_one(tmp_path):
    report = with_verdict(_report(10, {"base:few-shot": 5, "finetuned": 10}, ["finetuned.accuracy>=0.9"]))
    back = read_eval_report(write_eval_report(tmp_path, report))
    assert back.verdict == report.verdict and back.verdict.startswith("The fine-tuned model gets 10 of 10")
    old = read_eval_report("tests/assets/eval/report_preference_v0.json")  # no verdict, gate without words
    assert old.verdict is None
    text = verdict_for(old)
    assert "prefers the chosen answer on 3 of 4 pairs" in text
    assert "the fine-tuned model's preference accuracy (0.750) is below 0.9" in text


def test_primary_metric_and_directions():
    assert primary_metric(_report(4, {"finetuned": 3})) == "accuracy"
    free = EvalReport(task="chat", n=4, headline=["token_f1", "rouge_l"],
                      candidates={"finetuned": Candidate(metrics={"token_f1": 0.5, "rouge_l": 0.4})})  # fmt: skip
    assert primary_metric(free) == "token_f1"
    assert "scores 0.500 token F1 (mean over 4 hold-out examples)" in verdict_for(free)
    assert metric_info("invalid_rate").lower_is_better and metric_info("latency_ms.p95").lower_is_better
    assert not metric_info("accuracy").lower_is_better and metric_info("some_new_latency").lower_is_better
