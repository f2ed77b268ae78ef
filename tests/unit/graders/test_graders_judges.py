"""score_model and label_model on hand-computed cases. The judge model is replaced by scripted replies (a fake
with intent: the test is about prompts, parsing and scoring; the real HTTP judge is
tests/integration/graders/test_graders_judged_eval.py)."""

from __future__ import annotations

import pytest

from tunesmith.graders import load_grader
from tunesmith.graders.judge import JudgeClient

pytestmark = pytest.mark.unit


class Replies(JudgeClient):
    label = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.asked = list(replies), []

    def complete(self, conversations, params):
        self.asked += conversations
        return [self.replies.pop(0) for _ in conversations]


RUBRIC = [
    {"role": "developer", "content": "Grade the reply against the policy."},
    {
        "role": "user",
        "content": [{"type": "input_text", "text": "Q: {{item.input}}"}, "A: {{sample.output_text}}"],
    },
]


def test_score_model_by_hand() -> None:
    g = load_grader(
        {"type": "score_model", "name": "policy", "model": "tiny", "range": [1, 10], "input": RUBRIC}
    )
    g.client = Replies(['{"steps": [], "result": 8}', "Score: 3", "eleven", "10/10"])
    grades = g.evaluate(["a", "b", "c", "d"], [{"input": f"q{i}"} for i in range(4)])
    assert [x.score for x in grades] == [8.0, 3.0, 1.0, 10.0]  # "eleven" holds no number: the range's low end
    assert [x.passed for x in grades] == [True, False, False, True]  # default threshold: (1 + 10) / 2
    assert grades[2].note.startswith("no score in reply") and grades[0].note == ""
    first = g.client.asked[0]
    assert first[0] == {
        "role": "system",
        "content": "Grade the reply against the policy.",
    }  # developer -> system
    assert first[1]["content"] == "Q: q0\nA: a\n\nReply with only the score: a number from 1 to 10."


def test_label_model_by_hand() -> None:
    g = load_grader(
        {"type": "label_model", "name": "tone", "model": "tiny", "input": RUBRIC,
         "labels": ["polite", "neutral", "rude"], "passing_labels": ["polite", "neutral"]}
    )  # fmt: skip
    g.client = Replies(["polite", "Rude.", '{"result": "neutral"}', "no idea"])
    grades = g.evaluate(["a", "b", "c", "d"], [{"input": "q"}] * 4)
    assert [(x.label, x.score, x.passed) for x in grades] == [
        ("polite", 1.0, True), ("rude", 0.0, False), ("neutral", 1.0, True), (None, 0.0, False)
    ]  # fmt: skip
    assert "Reply with only one of these labels: polite, neutral, rude." in g.client.asked[0][-1]["content"]


def test_score_model_pass_threshold_and_range_are_checked() -> None:
    g = load_grader(
        {"type": "score_model", "name": "p", "model": "tiny", "input": RUBRIC, "pass_threshold": 0.9}
    )
    g.client = Replies(["0.85", "0.95"])
    assert [x.passed for x in g.evaluate(["a", "b"], [{"input": "q"}] * 2)] == [False, True]


def test_an_unreachable_judge_endpoint_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = load_grader(
        {"type": "score_model", "name": "p", "model": "judge", "input": RUBRIC},
        endpoint=f"http://127.0.0.1:{port}/v1",
    )
    from tunesmith.errors import TunesmithError

    with pytest.raises(TunesmithError, match=f"Cannot reach the judge at http://127.0.0.1:{port}/v1"):
        g.grade("a", {"input": "q"})
