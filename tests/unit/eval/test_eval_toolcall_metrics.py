"""The tool-call task's metrics, its choice for a hold-out and its few-shot turns (eval/tasks/toolcalls.py)."""

from __future__ import annotations

import json

import pytest

from tunesmith.data.toolcalls import ToolCall
from tunesmith.eval.prompts import few_shot_messages
from tunesmith.eval.tasks import ToolCallTask, task_for
from tunesmith.eval.tasks.toolcalls import reference_calls, tool_call_metrics

pytestmark = pytest.mark.unit


def _row(calls: list[tuple[str, dict]] | None, text: str = "") -> dict:
    last: dict = {"role": "assistant", "content": text or None}
    if calls:
        last["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls)
        ]
    return {"messages": [{"role": "user", "content": "q"}, last], "tools": [{"type": "function"}]}


def _hermes(*calls: tuple[str, dict]) -> str:
    return "".join(f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>" for n, a in calls)


def test_metrics_by_hand() -> None:
    golds = [
        [ToolCall("get", {"id": "Q-1", "full": True})],
        [ToolCall("get", {"id": "Q-2"})],
        [ToolCall("get", {"id": "Q-3"}), ToolCall("cancel", {"id": "Q-3"})],
        [ToolCall("get", {"id": "Q-4"})],
        [],  # the reference answers in text
    ]
    answers = [
        _hermes(("get", {"full": True, "id": "Q-1"})),  # exact (key order does not matter)
        _hermes(("get", {"id": "Q-9"})),  # right function, wrong argument value
        _hermes(("cancel", {"id": "Q-3"}), ("get", {"id": "Q-3"})),  # both calls, other order: exact
        "It has shipped.",  # no call
        _hermes(("get", {"id": "Q-5"})),  # a call where the reference answered in text
    ]
    m = tool_call_metrics(golds, answers)
    assert m["n_call_rows"] == 4
    assert m["valid_call_rate"] == pytest.approx(3 / 4)
    assert m["function_name_accuracy"] == pytest.approx(3 / 4)
    assert m["argument_exact_match"] == pytest.approx(2 / 4)
    # per-row F1 of (function, argument, value) triples: 1, 0, 1, 0
    assert m["argument_f1"] == pytest.approx(2 / 4)
    assert m["call_decision_accuracy"] == pytest.approx(3 / 5)


def test_partial_arguments_give_partial_f1() -> None:
    gold = [[ToolCall("book", {"city": "Oslo", "nights": 2, "guests": 1})]]
    m = tool_call_metrics(gold, [_hermes(("book", {"city": "Oslo", "nights": 3}))])
    p, r = 1 / 2, 1 / 3
    assert m["argument_f1"] == pytest.approx(2 * p * r / (p + r))
    assert m["argument_exact_match"] == 0.0 and m["function_name_accuracy"] == 1.0
    other_format = tool_call_metrics(gold, ['[TOOL_CALLS][{"name": "book", "arguments": {"city": "Oslo"}}]'])
    assert other_format["valid_call_rate"] == 1.0  # Mistral-format answers are read too
    broken = tool_call_metrics(gold, ['<tool_call>{"name": "book", "arguments": {"city": </tool_call>'])
    assert broken["valid_call_rate"] == 0.0 and broken["argument_f1"] == 0.0


def test_task_is_chosen_for_tool_call_references_and_shots_keep_their_calls() -> None:
    rows = [_row([("get", {"id": "Q-1"})]), _row([("get", {"id": "Q-2"})])]
    task = task_for("chat", rows)
    assert isinstance(task, ToolCallTask) and task.applied.families == ["tool_calls"]
    assert not isinstance(task_for("chat", [_row(None, "hello")]), ToolCallTask)
    assert json.loads(task.reference(rows[0])) == [{"name": "get", "arguments": {"id": "Q-1"}}]
    assert reference_calls(rows[1]) == [ToolCall("get", {"id": "Q-2"})]
    assert task.correct(rows[0], _hermes(("get", {"id": "Q-1"})))
    assert not task.correct(rows[0], _hermes(("get", {"id": "Q-2"})))
    msgs = few_shot_messages(rows[0], task, "sys", [rows[1]])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["tool_calls"][0]["function"]["name"] == "get"  # the shot's call, not its text
    assert task.answer_key(_hermes(("get", {"id": "Q-1"}))) == task.answer_key(
        '<tool_call>{"arguments": {"id": "Q-1"}, "name": "get"}</tool_call>'
    )


def test_calls_an_api_returned_are_scored_like_written_ones() -> None:
    from tunesmith.eval.tasks.toolcalls import calls_as_text

    wire = [{"id": "c", "type": "function", "function": {"name": "get", "arguments": '{"id": "Q-1"}'}}]
    m = tool_call_metrics([[ToolCall("get", {"id": "Q-1"})]], [calls_as_text(wire)])
    assert m["argument_exact_match"] == 1.0 and m["valid_call_rate"] == 1.0
    assert calls_as_text([]) == ""
