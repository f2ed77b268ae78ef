"""`tunesmith eval` on a tool-calling hold-out: a tiny model with a tool template, a real LoRA run on
tool-calling chats, the prompted baselines and the fine-tune scored by the tool-call metrics, with the
rows' ``tools`` in every prompt exactly as training rendered them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.integration
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def tool_rows(n: int, start: int, with_result: bool) -> list[dict]:
    """Chats asking for an order's status: the call, and (``with_result``) the tool's result and answer."""
    rows = []
    for i in range(start, start + n):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "get_order_status", "arguments": json.dumps({"order_id": f"Q-{i}"})},
        }
        msgs = [
            {"role": "user", "content": f"Where is order Q-{i}?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
        if with_result:
            msgs += [
                {"role": "tool", "tool_call_id": f"call_{i}", "content": '{"status": "shipped"}'},
                {"role": "assistant", "content": f"Order Q-{i} is shipped."},
            ]
        rows.append({"messages": msgs, "tools": TOOLS})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[dict, Path]:
    from tunesmith.config import validate_config_dict
    from tunesmith.models.tiny import ensure_tiny_tools_model
    from tunesmith.train.api import train

    model = ensure_tiny_tools_model()
    root = tmp_path_factory.mktemp("evaltools")
    tr = _write(root / "train.jsonl", tool_rows(16, 100, with_result=True))
    ho = _write(root / "holdout.jsonl", tool_rows(6, 500, with_result=False))
    cfg = validate_config_dict(
        {
            "model": {"name": str(model)},
            "data": {"train": str(tr), "holdout": str(ho), "max_seq_len": 512},
            "train": {"lr": 5e-3, "max_steps": 2, "output_dir": str(root / "runs"), "run_name": "tools"},
        }
    )
    res = train(cfg)
    assert res.status == "completed"
    (root / "eval.yaml").write_text(
        f"model:\n  name: {model}\n"  # the config's model is the base (else the default SmolLM2)
        "eval:\n  few_shot_selection: random\n  few_shot_k: 2\n  consistency_examples: 2\n  max_new_tokens: 8\n"
    )
    out = root / "rep"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--data",
            str(ho),
            "--adapter",
            str(res.run_dir),
            "--train",
            str(tr),
            "--out",
            str(out),
            "--baselines",
            "zero-shot,few-shot",
            "--config",
            str(root / "eval.yaml"),
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text()), model


def test_tool_call_task_is_scored_for_baselines_and_finetune(evaluated) -> None:
    report, _ = evaluated
    assert report["task"] == "chat" and report["applied"]["families"] == ["tool_calls"]
    assert report["headline"][:2] == ["argument_exact_match", "function_name_accuracy"]
    assert list(report["candidates"]) == ["base:zero-shot", "base:few-shot", "finetuned"]
    for cand in report["candidates"].values():
        m = cand["metrics"]
        assert m["n_call_rows"] == 6
        for key in ("valid_call_rate", "function_name_accuracy", "argument_exact_match", "argument_f1"):
            assert 0.0 <= m[key] <= 1.0
        assert "tool calls" in cand["scored_by"]


def test_every_candidate_prompt_holds_the_tools_as_training_renders_them(evaluated) -> None:
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.models.load import load_tokenizer

    report, model = evaluated
    tok = load_tokenizer(str(model))
    rows = tool_rows(6, 500, with_result=False)
    expected = [len(prompt_ids(tok, r["messages"][:-1], tools=TOOLS)) for r in rows]
    without = [len(prompt_ids(tok, r["messages"][:-1])) for r in rows]
    cands = report["candidates"]
    for name in ("base:zero-shot", "finetuned"):
        assert cands[name]["metrics"]["mean_prompt_tokens"] == pytest.approx(sum(expected) / 6)
    assert sum(expected) / 6 > sum(without) / 6 + 50
    # few-shot: two example calls rendered as assistant tool calls before the question
    assert cands["base:few-shot"]["metrics"]["mean_prompt_tokens"] > sum(expected) / 6 + 2 * 20
