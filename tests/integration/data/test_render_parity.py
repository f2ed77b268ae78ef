"""One prompt renderer: the same conversation (system prompt, several turns, tools, a tool call and its
result) becomes the same token ids in training, ``tunesmith eval``, ``tunesmith chat`` and the server.

Training's ids are the real masked tokens (``train.data.prepare_data``): the prompt part is every token
before the last answer's trained tokens. Eval, chat and the server are run for real (the eval runner, the
chat command through typer, the server through the ``openai`` SDK and the real engine); what each hands
to generation is recorded at ``models.generate.generate_from_ids``, which answers with scripted text (the
test is about the prompt, not the answer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
SYSTEM = "You are the Northwind order desk. Be brief."
CALL_TEXT = '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "Q-7"}}\n</tool_call>'
GREETING = "Hello! How can I help?"
CONV = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": GREETING},
    {"role": "user", "content": "Where is order Q-7?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_order_status", "arguments": '{"order_id": "Q-7"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    {"role": "assistant", "content": "Order Q-7 is shipped."},
]


class Recorder:
    """Stands in for ``generate_from_ids``: records every prompt and answers with the next scripted text."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.answers: list[str] = []

    def __call__(self, model: Any, tok: Any, prompts: Any, settings: Any = None, **kw: Any) -> list[Any]:
        from tunesmith.models.generate import Generation

        out = []
        for p in prompts:
            self.prompts.append(list(p))
            text = self.answers.pop(0) if self.answers else "ok"
            out.append(Generation(text, len(p), 1, 0.001, "stop"))
        return out


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    import tunesmith.models.generate as gen

    rec = Recorder()
    monkeypatch.setattr(gen, "generate_from_ids", rec)
    return rec


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[int]]:
    """The tool-template tiny model, the conversation as a data file, and training's prompt ids."""
    from tunesmith.config import validate_config_dict
    from tunesmith.data.tokenize import IGNORE_INDEX
    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.tiny import ensure_tiny_tools_model
    from tunesmith.train.data import prepare_data

    model = str(ensure_tiny_tools_model())
    root = tmp_path_factory.mktemp("parity")
    data = root / "conv.jsonl"
    data.write_text(json.dumps({"messages": CONV, "tools": TOOLS}) + "\n")
    cfg = validate_config_dict(
        {"model": {"name": model}, "data": {"train": str(data), "holdout": str(data), "max_seq_len": 2048}}
    )
    tok = prepare_data(cfg, load_tokenizer(model)).train[0]
    start = max(i for i, x in enumerate(tok.labels) if x != IGNORE_INDEX)
    while tok.labels[start - 1] != IGNORE_INDEX:  # back to the first token of the last trained answer
        start -= 1
    assert tok.labels[start - 1] == IGNORE_INDEX and tok.n_trained > 0
    return model, data, tok.input_ids[:start]


def test_training_prompt_holds_every_part(setup) -> None:
    from tunesmith.models.load import load_tokenizer

    model, _, train_ids = setup
    text = load_tokenizer(model).decode(train_ids)
    for part in (
        SYSTEM,
        '"name": "get_order_status"',
        GREETING,
        '{"order_id": "Q-7"}',
        '{"status": "shipped"}',
    ):
        assert part in text
    assert text.endswith("<|im_start|>assistant\n")


def test_eval_prompt_equals_training(setup, recorder: Recorder) -> None:
    from tunesmith.config import EvalConfig
    from tunesmith.eval.run import EvalSpec, run

    model, data, train_ids = setup
    settings = EvalConfig(max_new_tokens=4, consistency_examples=0)
    run(EvalSpec(data=data, model=model, baselines=("zero-shot",), settings=settings))
    assert recorder.prompts == [train_ids]


def test_chat_prompt_equals_training(setup, recorder: Recorder, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli.main import app

    model, _, train_ids = setup
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    recorder.answers = [GREETING, CALL_TEXT, "Order Q-7 is shipped."]
    lines = ["Hi there", "Where is order Q-7?", '/tool {"status": "shipped"}', "/exit"]
    res = CliRunner().invoke(
        app,
        ["chat", model, "--system", SYSTEM, "--tools", str(tools)],
        input="\n".join(lines) + "\n",
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "calls get_order_status" in res.output
    assert len(recorder.prompts) == 3
    assert recorder.prompts[-1] == train_ids  # after the tool's result: the same ids as training


def test_server_prompt_equals_training(setup, recorder: Recorder, tmp_path: Path) -> None:
    from tunesmith.serve.app import ServeSettings, create_app
    from tunesmith.serve.testing import in_process_client

    model, _, train_ids = setup
    app = create_app(ServeSettings(data_dir=tmp_path, start_workers=False, extra_base_models=[model]))
    try:
        client = in_process_client(app)
        r = client.chat.completions.create(model=model, messages=CONV[:-1], tools=TOOLS, max_tokens=4)
        assert r.usage.prompt_tokens == len(train_ids)
        streamed = list(
            client.chat.completions.create(
                model=model, messages=CONV[:-1], tools=TOOLS, max_tokens=4, stream=True
            )
        )
        assert streamed[-1].choices[0].finish_reason == "stop"
    finally:
        app.state.engine.close()
    assert recorder.prompts == [train_ids, train_ids]
