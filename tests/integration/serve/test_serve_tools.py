"""Tool calls end to end through the real ``openai`` SDK: a tiny from-config model whose chat template
supports tools (Hermes-style), the real engine, prompt rendering, streaming and decoding, with the model's
answer scripted (``Engine.script``) so the test knows what it "generated".

Also the case tools-serve-skew: a request's ``tools`` reach the prompt exactly as training renders them.
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
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    },
]
ASK = [{"role": "user", "content": "Where is order Q-7?"}]
CALL = '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "Q-7"}}\n</tool_call>'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tunesmith.models.tiny import ensure_tiny_tools_model
    from tunesmith.serve.app import ServeSettings, create_app
    from tunesmith.serve.testing import in_process_client

    model = str(ensure_tiny_tools_model())
    app = create_app(
        ServeSettings(data_dir=tmp_path_factory.mktemp("srv"), start_workers=False, extra_base_models=[model])
    )
    client = in_process_client(app)
    yield app, client, model
    app.state.engine.close()


class Script:
    """The engine's scripted answer; records the prompt ids the model was given."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.prompts = list(answers), []

    def __call__(self, prompt: list[int]) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _script(app: Any, *answers: str) -> Script:
    app.state.engine.script = Script(*answers)
    return app.state.engine.script


def _training_prompt(model: str, messages: list[dict], tools: Any) -> list[int]:
    """The prompt ids as training renders the conversation (``tokenize_chat`` of it plus an answer: the
    tokens before the answer's trained tokens)."""
    from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat
    from tunesmith.models.load import load_tokenizer

    tok = tokenize_chat(
        load_tokenizer(model), [*messages, {"role": "assistant", "content": "ok"}], tools=tools
    )
    last = max(i for i, x in enumerate(tok.labels) if x != IGNORE_INDEX)
    start = last
    while start > 0 and tok.labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return tok.input_ids[:start]


def test_tools_request_returns_parsed_tool_calls(served) -> None:
    app, client, model = served
    script = _script(app, CALL)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_order_status"
    assert json.loads(call.function.arguments) == {"order_id": "Q-7"}
    # the case tools-serve-skew: the tools are in the prompt, exactly as training renders them
    assert script.prompts[-1] == _training_prompt(model, ASK, TOOLS)
    assert r.usage.prompt_tokens == len(script.prompts[-1])
    _script(app, "I cannot look that up.")
    without = client.chat.completions.create(model=model, messages=ASK, temperature=0)
    assert r.usage.prompt_tokens > without.usage.prompt_tokens + 50  # the tool block is ~100 tokens
    assert without.choices[0].message.tool_calls is None


def test_streamed_tool_calls_arrive_as_deltas(served) -> None:
    app, client, model = served
    _script(app, "Let me check. " + CALL)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    content = "".join(d.content or "" for d in deltas)
    assert content == "Let me check."  # no piece of the call leaks into the content
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].index == 0 and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_order_status"
    assert len(calls) > 2  # the arguments come in several pieces
    assert all(tc.index == 0 and tc.id is None for tc in calls[1:])
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"order_id": "Q-7"}
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["tool_calls"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 100
    # the SDK's own stream helper accumulates the deltas into the same call
    _script(app, CALL)
    with client.chat.completions.stream(model=model, messages=ASK, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_order_status"
    assert json.loads(call.function.arguments) == {"order_id": "Q-7"}


def test_plain_answer_with_tools_streams_as_content(served) -> None:
    app, client, model = served
    _script(app, "Order Q-7 is shipped.")
    chunks = list(client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Order Q-7 is shipped."
    assert not any(d.tool_calls for d in deltas)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_history_tool_calls_and_results_are_rendered(served) -> None:
    app, client, model = served
    history = [
        *ASK,
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
    ]
    script = _script(app, "Order Q-7 is shipped.")
    r = client.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert r.choices[0].message.content == "Order Q-7 is shipped."
    assert r.choices[0].finish_reason == "stop"
    from tunesmith.models.load import load_tokenizer

    text = load_tokenizer(model).decode(script.prompts[-1])
    assert '{"name": "get_order_status", "arguments": {"order_id": "Q-7"}}' in text
    assert '<tool_response>\n{"status": "shipped"}\n</tool_response>' in text
    normalized = [{**m, "content": m["content"] or ""} for m in history]
    assert script.prompts[-1] == _training_prompt(model, normalized, TOOLS)


def test_tool_choice_required_named_and_parallel(served) -> None:
    import openai

    app, client, model = served
    two = CALL + '\n<tool_call>\n{"name": "cancel_order", "arguments": {"order_id": "Q-7"}}\n</tool_call>'
    _script(app, two)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_order_status", "cancel_order"]
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, parallel_tool_calls=False)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_order_status"]
    named = {"type": "function", "function": {"name": "cancel_order"}}
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice=named)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["cancel_order"]
    # required: a text answer is retried (seeded, sampled), and the call of the retry is returned
    script = _script(app, "Sure, one moment.", CALL)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required")
    assert r.choices[0].finish_reason == "tool_calls" and len(script.prompts) == 2
    _script(app, "I will not call anything.")
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required")
    assert err.value.body["code"] == "invalid_tool_call_output"
    # none: the tools are rendered, the answer is text even when it looks like a call
    _script(app, CALL)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content == CALL.strip()
    # required + stream: validated before it is sent, then streamed as deltas
    _script(app, CALL)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, tool_choice="required", stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_order_status"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_bad_tool_requests_are_400(served) -> None:
    import openai

    app, client, model = served
    _script(app, CALL)
    cases = [
        ({"model": "tiny", "tools": TOOLS}, "tools_not_supported", "tools"),  # ChatML: no tool support
        ({"model": model, "tool_choice": "required"}, None, "tool_choice"),
        (
            {
                "model": model,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            None,
            "tool_choice",
        ),
        ({"model": model, "tools": [TOOLS[0], TOOLS[0]]}, None, "tools"),
        ({"model": model, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}, None, None),
    ]
    for extra, code, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(messages=ASK, **extra)
        body = err.value.body
        assert set(body) == {"message", "type", "param", "code"}
        if code:
            assert body["code"] == code
        if param:
            assert body["param"] == param
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "{}"},
    ]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert err.value.body["param"] == "messages.1.tool_calls.0"
    with pytest.raises(openai.BadRequestError) as err:  # a template that would drop the history's calls
        client.chat.completions.create(model="tiny", messages=[*history[:1], _good_call(), history[2]])
    assert err.value.body["code"] == "tools_not_supported" and err.value.body["param"] == "messages"


def _good_call() -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }


def test_case_tools_serve_skew_prompt_tokens(served, tmp_path: Path) -> None:
    """tools-serve-skew: prompt_tokens with tools equals the training rendering (it was 24 vs 133)."""
    app, client, model = served
    rows = [json.loads(x) for x in (ASSETS / "toolcalls_null.jsonl").read_text().splitlines()]
    tools = rows[0]["tools"]
    _script(app, "ok")
    a = client.chat.completions.create(model=model, messages=ASK, tools=tools, max_tokens=3, temperature=0)
    b = client.chat.completions.create(model=model, messages=ASK, max_tokens=3, temperature=0)
    assert a.usage.prompt_tokens == len(_training_prompt(model, ASK, tools))
    assert a.usage.prompt_tokens > b.usage.prompt_tokens


ASSETS = Path(__file__).parents[2] / "assets" / "tools"
