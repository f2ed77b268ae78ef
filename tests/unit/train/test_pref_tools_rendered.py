"""Preference pairs keep their ``tools`` (OpenAI DPO ``input.tools``) and training and pair scoring render
them into the prompt, as chat rows' tools are (the one prompt renderer, ``data.render``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TOOLS = [{"type": "function", "function": {"name": "get_order_status", "parameters": {"type": "object"}}}]


def test_dpo_pairs_render_their_tools(tmp_path: Path) -> None:
    from tunesmith.data.formats import load_data
    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.tiny import ensure_tiny_tools_model
    from tunesmith.train.pref_engine import build_pair_examples

    line = {
        "input": {"messages": [{"role": "user", "content": "Where is Q-7?"}], "tools": TOOLS},
        "preferred_output": [{"role": "assistant", "content": "Let me look it up."}],
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
    }
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps(line) + "\n")
    (row,) = load_data(f, None).rows
    assert row["tools"] == TOOLS
    tok = load_tokenizer(str(ensure_tiny_tools_model()))
    (with_tools,), _ = build_pair_examples(tok, [row], 2048)
    (without,), _ = build_pair_examples(tok, [{k: v for k, v in row.items() if k != "tools"}], 2048)
    chosen = tok.decode(with_tools.input_ids[: with_tools.split])
    assert "get_order_status" in chosen and "<tools>" in chosen
    assert len(with_tools.input_ids) > len(without.input_ids) + 20
