"""Task objects: which task the answers choose, and what each task owns (no language model)."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import EvalConfig
from tunesmith.errors import TunesmithError
from tunesmith.eval.prompts import few_shot_messages, reword
from tunesmith.eval.tasks import (
    AnswerLabelsTask,
    ClassificationTask,
    ExtractionTask,
    JsonAnswersTask,
    PreferenceTask,
    TextTask,
    task_for,
)

pytestmark = pytest.mark.unit


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_answers_choose_the_task():
    intents = [chat(f"question {i}", ["yes", "no", "maybe"][i % 3]) for i in range(12)]
    t = task_for("chat", intents)
    assert isinstance(t, AnswerLabelsTask) and t.labels == ["maybe", "no", "yes"]
    assert "closed set of 3" in t.applied.reason and t.headline[0] == "accuracy"
    # the hold-out alone is too small; with the training pool the set is closed
    assert type(task_for("chat", intents[:6])) is TextTask
    assert isinstance(task_for("chat", intents[:6], intents[6:]), AnswerLabelsTask)
    # every answer distinct: free text
    assert type(task_for("chat", [chat(f"q{i}", f"answer {i}") for i in range(12)])) is TextTask
    # long repeated answers are not labels
    long = [chat(f"q{i}", "please restart the router and wait") for i in range(12)]
    assert type(task_for("chat", long)) is TextTask
    objs = [chat(f"q{i}", json.dumps({"n": i, "name": f"x{i}"})) for i in range(3)]
    assert isinstance(task_for("chat", objs), JsonAnswersTask)
    mixed = [*objs, chat("q", "not json")]
    assert type(task_for("chat", mixed)) is TextTask
    comp = [{"prompt": f"p{i}", "completion": ["A", "B"][i % 2]} for i in range(10)]
    assert isinstance(task_for("completion", comp), AnswerLabelsTask)
    assert isinstance(task_for("extraction"), ExtractionTask)
    assert isinstance(task_for("preference"), PreferenceTask)
    with pytest.raises(TunesmithError, match="no reference answer"):
        task_for("text")


def test_answer_labels_task_scores_like_classification():
    rows = [chat(f"question {i}", ["C", "C++", "C#"][i % 3]) for i in range(12)]
    t = task_for("chat", rows)
    answers = ["C", "c++", "The answer is C#", "C", "C++", "nothing", *["C", "C++", "C#"] * 2]
    scored = t.score(rows, answers, EvalConfig())
    assert scored.metrics["accuracy"] == pytest.approx(11 / 12) and scored.metrics[
        "invalid_rate"
    ] == pytest.approx(1 / 12)
    assert [m.how for m in scored.matches[:6]] == [
        "exact",
        "normalised",
        "in_answer",
        "exact",
        "exact",
        "none",
    ]
    assert {"token_f1", "rouge_l"} <= set(scored.metrics)  # the text metrics stay
    assert t.golds(rows[:3]) == ["C", "C++", "C#"]
    assert t.answer_key("c++") == "C++" and t.correct(rows[1], "c++") and not t.correct(rows[0], "C#")
    v = reword(rows[0], t, seed=1)  # the chat form of the record is kept
    assert v["messages"][-1]["content"] == "C" and t.input_text(v) != "question 0"


def test_json_answers_task_adds_extraction_metrics():
    rows = [chat(f"q{i}", json.dumps({"amount": 10 + i, "due": f"2026-0{i + 1}-01"})) for i in range(3)]
    t = task_for("chat", rows)
    answers = ['{"amount": 10, "due": "2026-01-01"}', '{"amount": "11.0", "due": "2026-03-01"}', "no idea"]
    m = t.score(rows, answers, EvalConfig()).metrics
    assert m["valid_json_rate"] == pytest.approx(2 / 3) and m["exact_match"] == pytest.approx(1 / 3)
    assert m["per_field"]["amount"]["recall"] == pytest.approx(2 / 3)
    assert m["per_field"]["due"]["recall"] == pytest.approx(1 / 3)
    assert m["text_exact_match"] == pytest.approx(1 / 3) and "token_f1" in m
    assert t.correct(rows[0], answers[0]) and not t.correct(rows[1], answers[1])


class _Tok:
    """Counts one token per character: enough to check the budget rule."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": list(range(len(text)))}


def test_generation_budget_and_prompts_are_the_tasks():
    labels = ClassificationTask(labels=["billing", "technical"])
    assert labels.max_tokens(_Tok(), 128) == len("technical") + 16
    assert labels.max_tokens(_Tok(), 10) == 10  # never above the configured budget
    assert TextTask().max_tokens(_Tok(), 128) == 128
    rec = {"text": "Invoice 7 is due", "fields": {"invoice": 7}}
    x = ExtractionTask()
    msgs = few_shot_messages(rec, x, "Extract.", [rec])
    assert (
        msgs[2] == {"role": "assistant", "content": '{"invoice": 7}'}
        and msgs[-1]["content"] == "Invoice 7 is due"
    )
    assert x.system_prompt([rec]).endswith("invoice.") and TextTask().system_prompt([chat("a", "b")]) is None


def test_the_reason_says_the_answer_count_covers_the_training_pool():
    """A 70-example evaluation said "the 348 reference answers come from a closed set of 7": the count
    included the 278 training examples the few-shot pool draws from, without saying so."""
    queues = ["orders", "returns", "billing"]
    hold = [chat(f"email {i}", queues[i % 3]) for i in range(12)]
    pool = [chat(f"train email {i}", queues[i % 3]) for i in range(30)]
    t = task_for("chat", hold, pool)
    assert isinstance(t, AnswerLabelsTask)
    assert t.applied.reason.startswith("the 42 reference answers (12 hold-out + 30 training) come from")
    alone = task_for("chat", hold)
    assert alone.applied.reason.startswith("the 12 reference answers come from")
    rows = [chat(f"q{i}", json.dumps({"amount": i})) for i in range(3)]
    json_task = task_for("chat", rows, rows[:2])
    assert "all 5 reference answers (3 hold-out + 2 training) parse" in json_task.applied.reason
