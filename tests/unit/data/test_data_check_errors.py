"""Every error code on crafted files, with its line and the exit code, through the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from datahelp import chat, check, runner, sentence, write_jsonl

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit

ASSETS = Path(__file__).parents[2] / "assets" / "data"
sys.path.insert(0, str(ASSETS.parent))
from make_data_assets import BROKEN  # noqa: E402

CLEAN = [
    "chat.jsonl",
    "completion.jsonl",
    "classification.csv",
    "classification.jsonl",
    "extraction.jsonl",
    "preference_openai.jsonl",
    "preference_trl.jsonl",
    "text.txt",
    "docs",
]
FORMATS = {
    "chat.jsonl": "chat",
    "completion.jsonl": "completion",
    "classification.csv": "classification",
    "classification.jsonl": "classification",
    "extraction.jsonl": "extraction",
    "preference_openai.jsonl": "preference",
    "preference_trl.jsonl": "preference",
    "text.txt": "text",
    "docs": "text",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_file_reports_its_code_on_its_line_and_exits_1(name, tmp_path):
    src = ASSETS / name
    path = tmp_path / src.name
    shutil.copy(src, path)
    code, report, output = check(path)
    _, want_code, want_line = BROKEN[name]
    assert code == 1, output
    assert report["ok"] is False
    assert (want_line, want_code) in [(e["line"], e["code"]) for e in report["errors"]]
    for e in report["errors"]:
        assert e["message"] and e["hint"], e  # every error says what and how to fix it
    assert want_code in output and "Traceback" not in output


@pytest.mark.parametrize("name", CLEAN)
def test_clean_asset_in_every_format_has_no_errors_and_no_warnings(name, tiny_model_dir):
    code, report, output = (
        check(ASSETS / name, model=str(tiny_model_dir))
        if name != "docs"
        else _check_dir(ASSETS / name, tiny_model_dir)
    )
    assert code == 0, output
    # chat.jsonl line 16 is a tool call with its tool schema, which the tiny model's plain ChatML template
    # does not render: the data is clean, the model is not fit for it (data/template_check.py)
    template = {"tool_calls_dropped": [16], "tools_dropped": [16]} if name == "chat.jsonl" else {}
    assert report["ok"] is True and report["errors"] == [], report["errors"]
    assert {w["code"]: w["lines"] for w in report["warnings"]} == template, report["warnings"]
    assert report["format"] == FORMATS[name]
    assert report["stats"]["tokens_per_example"]["max"] > 0


def _check_dir(folder, model):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        res = runner.invoke(app, ["data", "check", str(folder), "--model", str(model), "--json", str(out)])
        return res.exit_code, json.loads(out.read_text()), res.output


def test_json_shape_is_exactly_the_documented_one(tmp_path):
    rows = [chat(sentence(i), sentence(i + 100, 6)) for i in range(12)]
    code, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows), "--max-seq-len", "64", model="tiny")
    assert code == 0
    assert list(report) == ["ok", "format", "n_examples", "errors", "warnings", "stats"]
    assert report["n_examples"] == 12 and report["format"] == "chat"
    stats = report["stats"]
    assert stats["examples"] == 12 and stats["turns"] == {"min": 2, "mean": 2.0, "max": 2}
    tpe = stats["tokens_per_example"]
    assert tpe["min"] <= tpe["p50"] <= tpe["p90"] <= tpe["p95"] <= tpe["p99"] <= tpe["max"]
    assert stats["train_tokens_per_epoch"] <= 12 * 64
    for w in report["warnings"]:
        assert set(w) == {"code", "level", "message", "lines"} and w["level"] in ("warning", "info")


def test_all_bad_lines_are_reported_not_only_the_first(tmp_path):
    rows = [json.dumps(chat(sentence(i), sentence(i + 50, 5))) for i in range(14)]
    rows[1] = "{oops"
    rows[4] = json.dumps(
        {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}
    )
    rows[8] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(rows) + "\n")
    code, report, _ = check(path)
    assert code == 1
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (2, "invalid_json"),
        (5, "unknown_role"),
        (9, "no_assistant_message"),
    ]
    assert report["n_examples"] == 11


def test_too_few_examples_is_an_error_with_exit_1(tmp_path):
    code, report, _ = check(
        write_jsonl(tmp_path / "few.jsonl", [chat(sentence(i), "fine answer") for i in range(9)])
    )
    assert code == 1 and [(e["line"], e["code"]) for e in report["errors"]] == [(0, "too_few_examples")]


def test_holdout_errors_are_reported_with_the_holdout_name(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [chat(sentence(i), sentence(i + 40, 4)) for i in range(12)])
    hold = tmp_path / "hold.jsonl"
    hold.write_text(json.dumps(chat("q", "a")) + "\nnot json\n")
    code, report, _ = check(train, "--holdout", str(hold))
    assert code == 1
    (err,) = report["errors"]
    assert err["line"] == 2 and err["code"] == "invalid_json" and "hold.jsonl (hold-out)" in err["message"]


def test_template_error_names_the_line(tmp_path, tiny_model_dir):
    model = tmp_path / "strict"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = (
        "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('tool turns are not supported') }}{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    rows = [chat(sentence(i), sentence(i + 30, 5)) for i in range(12)]
    rows[6]["messages"].insert(1, {"role": "tool", "content": "result"})
    code, report, output = check(write_jsonl(tmp_path / "t.jsonl", rows), model=str(model))
    assert code == 1, output
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(7, "template_error")]
    assert "tool turns are not supported" in report["errors"][0]["message"]


def test_usage_errors_exit_2(tmp_path):
    ok = write_jsonl(tmp_path / "ok.jsonl", [chat(sentence(i), "answer text") for i in range(12)])
    res = runner.invoke(app, ["data", "check", str(tmp_path / "missing.jsonl"), "--model", "none"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["data", "check", str(ok), "--task", "poetry", "--model", "none"])
    assert res.exit_code == 2 and "not a data format" in res.output
    res = runner.invoke(app, ["data", "check", str(ok), "--model", str(tmp_path / "no-such-model")])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(
        app, ["data", "check", str(ok), "--model", "none", "--holdout", str(tmp_path / "nope.jsonl")]
    )
    assert res.exit_code == 2 and "Hold-out file" in res.output


def test_directory_without_text_files_is_one_clear_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG")
    code, report, output = check(tmp_path / "sub")
    assert code == 1 and [e["code"] for e in report["errors"]] == ["empty_file"] and "Traceback" not in output


def test_huge_line_and_wrong_forced_task(tmp_path, tiny_model_dir):
    rows = [chat(sentence(i), sentence(i + 9, 6)) for i in range(12)]
    rows[2] = chat("x " * 300_000, "short answer")  # a ~600 kB line
    code, report, _ = check(
        write_jsonl(tmp_path / "huge.jsonl", rows), "--max-seq-len", "128", model=str(tiny_model_dir)
    )
    assert code == 0
    trunc = [w for w in report["warnings"] if w["code"] == "truncation"]
    assert trunc and trunc[0]["lines"] == [3]
    code, report, _ = check(tmp_path / "huge.jsonl", "--task", "classification")
    assert code == 1 and {e["code"] for e in report["errors"]} == {"missing_content", "too_few_examples"}


def test_terminal_report_lists_errors_warnings_and_stats(tmp_path):
    rows = [chat(sentence(i), sentence(i + 60, 5)) for i in range(12)] + [chat(sentence(0), sentence(60, 5))]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    path.write_text(path.read_text() + "nope\n")
    res = runner.invoke(app, ["data", "check", str(path), "--model", "none"])
    assert res.exit_code == 1
    assert "invalid_json" in res.output and "duplicate" in res.output and "Stats" in res.output


def test_renamed_columns_hints_name_the_flag_and_the_check_command_keeps_it(tmp_path):
    """A helpdesk export (email_body/queue) with one bad row: every hint leads to a command that works."""
    rows = [f'KP-{i},"{sentence(i)} please help",{("billing", "orders")[i % 2]}' for i in range(12)]
    export = tmp_path / "help desk.csv"
    export.write_text("ticket_id,email_body,queue\n" + "\n".join(rows) + '\nKP-99,"call me back",\n')
    res = runner.invoke(app, ["data", "check", str(export), "--model", "none"])
    assert res.exit_code == 1 and "--text-field" in " ".join(res.output.split())
    out = tmp_path / "split"
    flags = ["--text-field", "email_body", "--label-field", "queue"]
    res = runner.invoke(app, ["data", "split", str(export), "--holdout", "0.2", "--out", str(out), *flags])
    assert res.exit_code == 1 and "line 14: [missing_label]" in res.output
    hint = " ".join(res.output.split()).split("Run `", 1)[1].split("`", 1)[0]
    assert hint == f"tunesmith data check '{export}' --text-field email_body --label-field queue"
    res = runner.invoke(app, ["data", "check", str(export), "--model", "none", *flags])
    assert res.exit_code == 1 and "missing_label" in res.output and "missing_column" not in res.output
