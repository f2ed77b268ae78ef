"""Preference data validation: every broken pair is reported with its line, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.formats import load_data, load_records_or_raise
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.unit

GOOD = {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away."}
U = {"role": "user", "content": "Hello"}
A = {"role": "assistant", "content": "Hi there"}


def _write(tmp_path: Path, rows: list) -> Path:
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def _errors(tmp_path: Path, bad: dict) -> list:
    """The bad row goes on line 3 between good rows, so the line number is checked, not assumed."""
    data = load_data(_write(tmp_path, [GOOD, GOOD, bad, GOOD]), "preference")
    assert len(data.records) == 3, "the good lines still load"
    return data.errors


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (
            {"prompt": "Q", "chosen": "Same answer", "rejected": "Same answer "},
            "'chosen' and 'rejected' are identical",
        ),
        ({"prompt": "Q", "chosen": "", "rejected": "No"}, "'chosen' is empty"),
        ({"prompt": "Q", "chosen": "Yes", "rejected": "   "}, "'rejected' is empty"),
        ({"prompt": "Q", "chosen": "Yes"}, "'rejected' is missing or empty"),
        (
            {"prompt": "Q", "chosen": [{"role": "assistant", "content": ""}], "rejected": "No"},
            "chosen[0] (assistant) has no text content",
        ),
        (
            {"prompt": [U, A], "chosen": "Yes", "rejected": "No"},
            "The prompt ends with an assistant turn (message 1)",
        ),
        (
            {"prompt": [U], "chosen": [A, A], "rejected": "No"},
            "'chosen' must be exactly one assistant message (got 2 messages)",
        ),
        (
            {"prompt": [U], "chosen": "Yes", "rejected": [U]},
            "'rejected' must be an assistant message (got role 'user')",
        ),
        ({"prompt": [], "chosen": "Yes", "rejected": "No"}, "'prompt' is missing or empty"),
    ],
    ids=[
        "identical",
        "empty-chosen",
        "blank-rejected",
        "missing-rejected",
        "empty-message",
        "prompt-ends-assistant",
        "two-messages",
        "wrong-role",
        "empty-prompt",
    ],
)
def test_each_bad_pair_is_reported_on_its_line(tmp_path: Path, bad: dict, needle: str) -> None:
    errors = _errors(tmp_path, bad)
    assert len(errors) == 1
    err = errors[0]
    assert err.line == 3 and err.message.startswith("Line 3:")
    assert needle in err.message, err.message
    assert err.hint  # every error says how to fix it


def test_openai_format_errors_name_the_openai_fields(tmp_path: Path) -> None:
    good = {
        "input": {"messages": [U]},
        "preferred_output": [A],
        "non_preferred_output": [{"role": "assistant", "content": "Bye"}],
    }
    same = dict(good, non_preferred_output=[A])
    ends_assistant = dict(good, input={"messages": [U, A]})
    two = dict(good, preferred_output=[A, A])
    rows = [good, same, ends_assistant, two]
    data = load_data(_write(tmp_path, rows), "preference")
    by_line = {e.line: e.message for e in data.errors}
    assert len(data.records) == 1 and sorted(by_line) == [2, 3, 4]
    assert "'preferred_output' and 'non_preferred_output' are identical" in by_line[2]
    assert "input.messages ends with an assistant turn" in by_line[3]
    assert "'preferred_output' must be exactly one assistant message (got 2 messages)" in by_line[4]


def test_multi_turn_prompt_ending_in_user_turn_is_valid(tmp_path: Path) -> None:
    row = {
        "prompt": [U, A, {"role": "user", "content": "And again?"}],
        "chosen": [A],
        "rejected": [{"role": "assistant", "content": "No"}],
    }
    data = load_data(_write(tmp_path, [row]), "preference")
    assert not data.errors
    assert [m["role"] for m in data.records[0].data["prompt"]] == ["user", "assistant", "user"]


def test_training_refuses_bad_pairs_listing_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path, [GOOD, {"prompt": "Q", "chosen": "x", "rejected": "x"}, GOOD, {"prompt": "Q", "chosen": ""}]
    )
    with pytest.raises(TunesmithError) as info:
        load_records_or_raise(path, "preference")
    msg = str(info.value)
    assert "2 error(s)" in msg and "line 2:" in msg and "line 4:" in msg and "tunesmith data check" in msg
