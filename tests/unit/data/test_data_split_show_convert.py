"""`data split`, `data show` and `data convert` through the CLI, on the tiny model and crafted files."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from datahelp import chat, runner, sentence, write_jsonl

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit

ASSETS = Path(__file__).parents[2] / "assets" / "data"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# --------------------------------------------------------------------------- split


def test_split_is_stratified_and_keeps_duplicates_together(tmp_path):
    rows = [{"text": sentence(i), "label": "a"} for i in range(50)] + [
        {"text": sentence(100 + i), "label": "b"} for i in range(20)
    ]
    rows += [rows[3]] * 3 + [
        {"text": rows[60]["text"] + " ok", "label": "b"}
    ]  # exact copies of line 4, a near copy of line 61
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    res = runner.invoke(
        app, ["data", "split", str(src), "--holdout", "0.2", "--seed", "7", "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 0, res.output
    train, hold = _lines(tmp_path / "out" / "train.jsonl"), _lines(tmp_path / "out" / "holdout.jsonl")
    assert len(train) + len(hold) == len(rows)
    by_label = Counter(r["label"] for r in hold)
    assert by_label["a"] in (10, 11, 12) and by_label["b"] in (4, 5)  # ~20% of 53 and of 21
    train_texts = {r["text"] for r in train}
    for r in hold:
        assert r["text"] not in train_texts  # no exact copy across the split
    near = {rows[60]["text"], rows[60]["text"] + " ok"}
    assert len(near & train_texts) in (0, 2)  # the near-duplicate pair is on one side
    # the same seed gives the same split, another seed a different one
    runner.invoke(
        app, ["data", "split", str(src), "--holdout", "0.2", "--seed", "7", "--out", str(tmp_path / "again")]
    )
    assert (tmp_path / "again" / "holdout.jsonl").read_bytes() == (
        tmp_path / "out" / "holdout.jsonl"
    ).read_bytes()
    runner.invoke(
        app, ["data", "split", str(src), "--holdout", "0.2", "--seed", "8", "--out", str(tmp_path / "other")]
    )
    assert (tmp_path / "other" / "holdout.jsonl").read_bytes() != (
        tmp_path / "out" / "holdout.jsonl"
    ).read_bytes()


def test_split_then_check_finds_no_leak(tmp_path):
    rows = [chat(sentence(i), sentence(i + 300, 6)) for i in range(40)]
    rows += [
        rows[5],
        chat(rows[9]["messages"][0]["content"], "another answer"),
    ]  # a copy, and a same-input pair
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    assert runner.invoke(app, ["data", "split", str(src), "--out", str(tmp_path / "s")]).exit_code == 0
    out = tmp_path / "r.json"
    runner.invoke(
        app,
        [
            "data",
            "check",
            str(tmp_path / "s" / "train.jsonl"),
            "--holdout",
            str(tmp_path / "s" / "holdout.jsonl"),
            "--model",
            "none",
            "--json",
            str(out),
        ],
    )
    assert "holdout_leak" not in {w["code"] for w in json.loads(out.read_text())["warnings"]}


def test_split_keeps_csv_format_and_columns(tmp_path):
    src = ASSETS / "classification.csv"
    res = runner.invoke(app, ["data", "split", str(src), "--holdout", "0.4", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with (tmp_path / "holdout.csv").open() as fh:
        hold = list(csv.DictReader(fh))
    with (tmp_path / "train.csv").open() as fh:
        train = list(csv.DictReader(fh))
    assert len(hold) + len(train) == 15 and set(hold[0]) == {"text", "label"}
    assert Counter(r["label"] for r in hold) == {"billing": 2, "technical": 2, "account": 2}


def test_split_refuses_bad_data_and_bad_fraction(tmp_path):
    res = runner.invoke(
        app, ["data", "split", str(ASSETS / "broken" / "invalid_json.jsonl"), "--out", str(tmp_path)]
    )
    assert res.exit_code == 1 and "invalid_json" in res.output and "data check" in res.output
    res = runner.invoke(
        app, ["data", "split", str(ASSETS / "chat.jsonl"), "--holdout", "1.5", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "between 0 and 1" in res.output


# --------------------------------------------------------------------------- show


def test_show_marks_trained_tokens_and_finds_nothing_on_good_data(tiny_model_dir):
    res = runner.invoke(
        app,
        ["data", "show", str(ASSETS / "chat.jsonl"), "--model", str(tiny_model_dir), "-n", "2", "--markers"],
    )
    assert res.exit_code == 0, res.output
    assert "[[I am sorry about the unexpected charge." in res.output  # the answer is trained...
    assert "<|im_end|>]]" in res.output  # ...with its end-of-turn token
    assert "[[Which phone do you use?" not in res.output  # a weight-0 turn is context only
    assert "No findings" in res.output


def _model_with_template(tmp_path: Path, tiny_model_dir: Path, template: str) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    return model


def test_show_finds_untrained_eos_and_dropped_system_prompt(tmp_path, tiny_model_dir):
    # a template that ignores system messages and never closes the assistant turn
    template = "{% for m in messages %}{% if m['role'] != 'system' %}{{ m['role'] }}: {{ m['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    model = _model_with_template(tmp_path, tiny_model_dir, template)
    res = runner.invoke(app, ["data", "show", str(ASSETS / "chat.jsonl"), "--model", str(model), "-n", "1"])
    assert res.exit_code == 0, res.output
    assert "eos_not_trained" in res.output and "system_prompt_dropped" in res.output


def test_show_finds_examples_with_no_trained_tokens(tmp_path, tiny_model_dir):
    rows = [chat(sentence(i), sentence(i + 10, 4)) for i in range(12)]
    rows[4]["messages"][1]["weight"] = 0
    src = write_jsonl(tmp_path / "w.jsonl", rows)
    res = runner.invoke(app, ["data", "show", str(src), "--model", str(tiny_model_dir)])
    assert res.exit_code == 0 and "no_trained_tokens" in res.output and "(lines 5)" in res.output
    # truncation that cuts the answer (and with it the end-of-turn) of line 1 is found too
    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.load import load_tokenizer

    full = len(tokenize_chat(load_tokenizer(str(tiny_model_dir)), rows[0]["messages"]).input_ids)
    res = runner.invoke(
        app, ["data", "show", str(src), "--model", str(tiny_model_dir), "--max-seq-len", str(full - 2)]
    )
    assert "eos_not_trained" in res.output and "(lines 1" in res.output


# --------------------------------------------------------------------------- convert


def test_convert_classification_table_to_chat_with_label_prompt(tmp_path, tiny_model_dir):
    out = tmp_path / "chat.jsonl"
    res = runner.invoke(app, ["data", "convert", str(ASSETS / "classification.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _lines(out)
    assert len(rows) == 15
    system, user, answer = rows[0]["messages"]
    assert system["role"] == "system" and "account, billing, technical" in system["content"]
    assert user == {
        "role": "user",
        "content": "My invoice shows a charge I do not recognise from last Tuesday.",
    }
    assert answer == {"role": "assistant", "content": "billing"}
    # the converted file is valid chat data, and its labels are recognised
    report = tmp_path / "r.json"
    assert (
        runner.invoke(
            app, ["data", "check", str(out), "--model", str(tiny_model_dir), "--json", str(report)]
        ).exit_code
        == 0
    )
    assert json.loads(report.read_text())["stats"]["labels"] == {"billing": 5, "technical": 5, "account": 5}


def test_convert_extraction_and_custom_prompt(tmp_path):
    out = tmp_path / "x.jsonl"
    res = runner.invoke(app, ["data", "convert", str(ASSETS / "extraction.jsonl"), "--out", str(out)])
    assert res.exit_code == 0
    first = _lines(out)[0]["messages"]
    assert "vendor, number, amount" in first[0]["content"]
    assert json.loads(first[2]["content"]) == {"vendor": "Acme Ltd", "number": "1001", "amount": 120.5}
    args = ["data", "convert", str(ASSETS / "classification.jsonl"), "--out", str(out)]
    before = out.read_bytes()
    res = runner.invoke(app, [*args, "--system-prompt", "Route it."])
    assert res.exit_code == 2 and "already exists" in res.output and out.read_bytes() == before
    res = runner.invoke(app, [*args, "--system-prompt", "Route it.", "--force"])
    assert res.exit_code == 0, res.output
    assert _lines(out)[3]["messages"][0] == {"role": "system", "content": "Route it."}


def test_convert_refuses_chat_and_preference_and_missing_index(tmp_path):
    res = runner.invoke(
        app, ["data", "convert", str(ASSETS / "chat.jsonl"), "--out", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 1 and "already chat" in res.output
    res = runner.invoke(
        app, ["data", "convert", str(ASSETS / "preference_trl.jsonl"), "--out", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 1 and "preference" in res.output
    res = runner.invoke(
        app,
        [
            "data",
            "convert",
            str(ASSETS / "completion.jsonl"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--with-context",
            str(tmp_path / "no-index"),
        ],
    )
    assert res.exit_code == 2 and "not an index folder" in res.output


def test_split_keeps_a_single_example_label_in_training(tmp_path):
    rows = [{"text": sentence(i), "label": "common"} for i in range(30)] + [
        {"text": sentence(77, 5), "label": "lonely"}
    ]
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    for seed in range(5):
        out = tmp_path / f"s{seed}"
        assert (
            runner.invoke(
                app, ["data", "split", str(src), "--holdout", "0.5", "--seed", str(seed), "--out", str(out)]
            ).exit_code
            == 0
        )
        assert "lonely" in {r["label"] for r in _lines(out / "train.jsonl")}
        assert len(_lines(out / "holdout.jsonl")) == 15
