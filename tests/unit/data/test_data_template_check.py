"""Chat-template checks on every trained turn (data/template_check.py) and in `data check`
(case noend-template: the assistant turn is closed only by the next role marker)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.data.formats import default_system_prompt, load_data, to_chat
from tunesmith.data.template_check import Example, check_template
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat
from tunesmith.models.load import load_tokenizer

pytestmark = pytest.mark.unit

ASSETS = Path(__file__).parents[2] / "assets"
NOEND = ASSETS / "cases" / "noend-template"

# ChatML whose first assistant turn (message 2) ends with nothing, later ones with <|im_end|>. A check of
# the last trained token alone (what `data show` did) passes a two-turn chat; its first turn never learns
# to stop.
LAST_ONLY = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if message['role'] != 'assistant' or loop.index0 >= 3 %}{{ '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# ChatML that renders tools and tool_calls as JSON (what a tool-aware template does)
WITH_TOOLS = (
    "{% if tools %}{{ '<|im_start|>system\nTools: ' + (tools | tojson) + '<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if message.tool_calls %}{{ '<tool_call>' + (message.tool_calls | tojson) + '</tool_call>' }}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NO_SYSTEM = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ '<|im_start|>' + message['role'] + "
    "'\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _model_with_template(tiny_model_dir: Path, tmp_path: Path, template: str) -> Path:
    """A copy of the tiny model folder whose chat_template.jinja is ``template`` (as the case built it)."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / "chat_template.jinja").write_text(template)
    return out


def _examples(path: Path) -> list[Example]:
    data = load_data(path)
    prompt = default_system_prompt(data.rows, data.task)
    return [Example(r.line, to_chat(r.data, data.task, prompt), r.data.get("tools")) for r in data.records]


def _codes(findings: list) -> dict[str, list[int]]:
    return {f.code: f.lines for f in findings}


def test_case_noend_template_data_check_warns(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _model_with_template(tiny_model_dir, tmp_path, (NOEND / "chat_template.jinja").read_text())
    res = CliRunner().invoke(
        app, ["data", "check", str(NOEND / "chat12_nosys.jsonl"), "--model", str(model), "--json", "-"]
    )
    report = json.loads(res.output)
    found = {w["code"]: w for w in report["warnings"]}
    assert "eos_not_trained" in found, report["warnings"]
    assert found["eos_not_trained"]["lines"] == list(range(1, 13))
    assert "'<|im_end|>'" in found["eos_not_trained"]["message"]  # the fix names the end token


def test_case_data_is_clean_with_a_template_that_closes_turns(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    assert check_template(tok, _examples(NOEND / "chat12_nosys.jsonl")) == []


def test_every_trained_turn_is_checked_not_only_the_last(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(_model_with_template(tiny_model_dir, tmp_path, LAST_ONLY)))
    two_turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    tokenized = tokenize_chat(tok, two_turns)
    trained = [i for i, lab in enumerate(tokenized.labels) if lab != IGNORE_INDEX]
    assert tokenized.input_ids[trained[-1]] == tok.convert_tokens_to_ids("<|im_end|>")  # last turn: fine
    assert _codes(check_template(tok, [Example(1, two_turns)])) == {"eos_not_trained": [1]}
    # a middle turn with weight 0 is not trained, so its missing end token teaches nothing wrong
    weighted = [dict(m, weight=0) if i == 1 else m for i, m in enumerate(two_turns)]
    assert check_template(tok, [Example(1, weighted)]) == []


def test_dropped_tool_calls_and_tools_are_found(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples = _examples(ASSETS / "data" / "chat.jsonl")  # line 16 holds a tool call and its tool schema
    tiny = load_tokenizer(str(tiny_model_dir))  # plain ChatML: renders neither
    assert _codes(check_template(tiny, examples)) == {"tool_calls_dropped": [16], "tools_dropped": [16]}
    tool_aware = load_tokenizer(str(_model_with_template(tiny_model_dir, tmp_path, WITH_TOOLS)))
    assert check_template(tool_aware, examples) == []


def test_dropped_system_prompt_is_found(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(_model_with_template(tiny_model_dir, tmp_path, NO_SYSTEM)))
    convo = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour."},
    ]
    found = check_template(tok, [Example(7, convo), Example(8, convo[1:])])
    assert _codes(found) == {"system_prompt_dropped": [7]}
    assert "first user message" in found[0].message


def test_truncated_last_turn_is_left_to_the_truncation_warning(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 200}]
    assert check_template(tok, [Example(1, convo)], max_len=32) == []


def test_large_files_are_sampled_by_shape(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(_model_with_template(tiny_model_dir, tmp_path, NO_SYSTEM)))
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    with_system = [{"role": "system", "content": "Be brief."}, *plain]
    examples = [Example(i, plain) for i in range(1, 1001)] + [Example(1001, with_system)]
    found = check_template(tok, examples)
    # the one conversation of another shape, far past the first examples, is still checked
    assert _codes(found) == {"system_prompt_dropped": [1001]}
    assert "of 1001" in found[0].message


def test_data_show_checks_every_trained_turn_too(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _model_with_template(tiny_model_dir, tmp_path, LAST_ONLY)
    turns = ["Hi", "Hello.", "Bye", "Goodbye."]
    rows = [
        {
            "messages": [
                {"role": r, "content": c} for r, c in zip(["user", "assistant"] * 2, turns, strict=True)
            ]
        }
    ] * 3
    data = tmp_path / "two_turns.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["data", "show", str(data), "--model", str(model), "-n", "1"])
    assert res.exit_code == 0 and "eos_not_trained" in res.output, res.output
