"""The pairwise judge's bookkeeping: both orders asked, wins only when both orders agree, position bias
measured. The judge model is replaced by scripted replies here (a fake with intent: the test is about how
verdicts are combined; the real HTTP path is tests/integration/graders/test_graders_judged_eval.py)."""

from __future__ import annotations

import re

import pytest

from tunesmith.graders import PairwiseJudge, load_grader
from tunesmith.graders.judge import JudgeClient

pytestmark = pytest.mark.unit


class Scripted(JudgeClient):
    """Answers each conversation with ``rule(answer_a, answer_b)``; keeps what it was asked."""

    label = "scripted"

    def __init__(self, rule) -> None:
        self.rule, self.asked = rule, []

    def complete(self, conversations, params):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            self.asked.append(text)
            a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", text, re.S).group(1)
            b = re.search(r"Answer B:\n(.*?)\n\nWhich", text, re.S).group(1)
            out.append(self.rule(a, b))
        return out


def judge(rule) -> PairwiseJudge:
    j = load_grader({"type": "pairwise", "name": "prefer", "model": "tiny"})
    j.client = Scripted(rule)
    return j


ITEMS = [{"input": f"q{i}", "reference": "r"} for i in range(4)]
X = ["a long helpful answer", "short", "a long helpful answer", "same"]
Y = ["short", "a long helpful answer", "tiny", "same"]


def test_a_fair_judge_wins_and_loses_consistently() -> None:
    j = judge(lambda a, b: "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")
    v = j.compare(ITEMS, X, Y)
    assert v.rows == ["win", "loss", "win", "tie"]
    assert (v.wins, v.ties, v.losses) == (2, 1, 1)
    assert v.consistency == 1.0
    assert v.first_position_rate == 0.5  # 6 decided verdicts, 3 for the answer shown first
    assert len(j.client.asked) == 8  # every pair in both orders
    assert sum("Answer A:\na long helpful answer\n" in t for t in j.client.asked) == 3


def test_a_judge_that_always_picks_the_first_answer_shows_its_bias() -> None:
    v = judge(lambda a, b: "A").compare(ITEMS, X, Y)
    assert v.rows == ["tie"] * 4  # the two orders never agree: no win is counted
    assert v.first_position_rate == 1.0 and v.consistency == 0.0
    s = v.summary()
    assert (s["win"], s["tie"], s["loss"], s["n"]) == (0.0, 1.0, 0.0, 4)


def test_unreadable_replies_count_as_ties_and_are_counted() -> None:
    v = judge(lambda a, b: "I cannot decide").compare(ITEMS[:2], X[:2], Y[:2])
    assert v.rows == ["tie", "tie"] and v.unparsed == 4 and v.first_position_rate is None


def test_the_built_in_rubric_uses_the_reference_only_when_there_is_one() -> None:
    j = judge(lambda a, b: "tie")
    j.compare([{"input": "q"}, {"input": "q", "reference": "gold"}], ["x", "x"], ["y", "y"])
    assert "Reference answer" not in j.client.asked[0] and "Reference answer:\ngold" in j.client.asked[1]


def test_the_offline_default_judge_is_the_embedded_model_labelled_weak(monkeypatch) -> None:
    for var in ("TUNESMITH_JUDGE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    g = load_grader(
        {
            "type": "score_model",
            "name": "tone",
            "input": [{"role": "user", "content": "{{sample.output_text}}"}],
        }
    )
    info = g.describe()  # the model is loaded on first use, not here
    assert info["model"] == "smollm2-135m-instruct (in-process; weak judge)" and info["weak"] is True
    assert "weak judge" in info["note"]


def test_a_local_judge_runs_in_process(monkeypatch, tiny_model_dir) -> None:
    for var in ("TUNESMITH_JUDGE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    g = load_grader(
        {"type": "score_model", "name": "tone", "model": "tiny", "range": [0, 10],
         "sampling_params": {"max_completions_tokens": 4},
         "input": [{"role": "user", "content": "Rate: {{sample.output_text}}"}]}
    )  # fmt: skip
    grades = g.evaluate(["hello", "thanks"], [{}, {}])
    for gr in grades:  # a random tiny model: either a number in range, or no number (low end, noted)
        assert 0 <= gr.score <= 10
        assert (gr.note == "") or (gr.score == 0 and gr.note.startswith("no score in reply"))
    g.close()
