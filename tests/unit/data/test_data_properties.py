"""Property tests: whatever bytes or JSON a file holds, the checker returns a report (never a traceback)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from datahelp import runner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.cli.main import app
from tunesmith.data.check import validate_data

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "weight",
                    "prompt",
                    "completion",
                    "chosen",
                    "rejected",
                    "text",
                    "label",
                    "fields",
                    "input",
                    "preferred_output",
                    "non_preferred_output",
                    "tools",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", "robot"]),
            "content": st.one_of(st.text(max_size=30), st.none(), st.integers()),
        },
        optional={"weight": st.sampled_from([0, 1, 2, 0.5, True, "1"])},
    ),
    max_size=5,
)
chat_rows = st.lists(st.fixed_dictionaries({"messages": messages}), min_size=0, max_size=14)


def _check_file(data: bytes, suffix: str, tokenizer=None):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        return validate_data(path, tokenizer=tokenizer, max_seq_len=64)


def _assert_sane(report) -> None:
    d = report.as_dict()
    json.dumps(d)  # serialisable
    assert d["ok"] == (not d["errors"])
    for e in d["errors"]:
        assert isinstance(e["line"], int) and e["line"] >= 0 and e["code"] and e["message"] and e["hint"]
    for w in d["warnings"]:
        assert w["code"] and w["message"] and all(isinstance(x, int) for x in w["lines"])


@SETTINGS
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".jsonl", ".csv", ".txt", ".tsv", ".md", ""]))
def test_random_bytes_give_a_report(data, suffix):
    report = _check_file(data, suffix)
    _assert_sane(report)
    if not data.strip():
        assert [e.code for e in report.errors] == ["empty_file"]


@SETTINGS
@given(rows=st.lists(json_values, max_size=14))
def test_random_json_lines_give_a_report(rows):
    report = _check_file("".join(json.dumps(r) + "\n" for r in rows).encode(), ".jsonl")
    _assert_sane(report)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=chat_rows)
def test_random_chat_rows_with_the_chat_template_give_a_report(rows, tiny_model_dir):
    from tunesmith.models.load import load_tokenizer

    report = _check_file(
        "".join(json.dumps(r) + "\n" for r in rows).encode(), ".jsonl", load_tokenizer(str(tiny_model_dir))
    )
    _assert_sane(report)
    if report.n_examples:
        assert report.stats["tokens_per_example"]["max"] > 0


@settings(max_examples=15, deadline=None)
@given(data=st.binary(max_size=500))
def test_cli_exit_code_is_0_or_1_on_any_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(data)
        res = runner.invoke(app, ["data", "check", str(path), "--model", "none"])
    assert res.exit_code in (0, 1), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
