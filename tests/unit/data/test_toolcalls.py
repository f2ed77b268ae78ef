"""Tool-call parsing per template family, the streaming splitter, and template probing (data.toolcalls,
data.render)."""

from __future__ import annotations

import pytest

from tunesmith.data.render import render_chat, renders_tool_calls, supports_tools, template_messages
from tunesmith.data.toolcalls import (
    CallSplitter,
    ToolCall,
    family_of_template,
    parse_tool_calls,
    tool_call_family,
)

pytestmark = pytest.mark.unit

GET = ToolCall("get", {"id": "Q-7"})


@pytest.mark.parametrize(
    ("family", "text", "content", "calls"),
    [
        ("hermes", '<tool_call>\n{"name": "get", "arguments": {"id": "Q-7"}}\n</tool_call>', "", [GET]),
        (
            "hermes",
            'Checking. <tool_call>{"name": "get", "arguments": "{\\"id\\": \\"Q-7\\"}"}</tool_call>'
            '<tool_call>{"name": "list", "arguments": {}}</tool_call>',
            "Checking.",
            [GET, ToolCall("list", {})],
        ),
        ("hermes", '<tool_call>{"name": "get", "arguments": {"id": "Q-7"}}', "", [GET]),  # stopped at EOS
        ("mistral", '[TOOL_CALLS][{"name": "get", "arguments": {"id": "Q-7"}}]', "", [GET]),
        ("mistral", '[{"name": "get", "arguments": {"id": "Q-7"}}]', "", [GET]),  # marker decoded away
        ("llama3_json", '{"name": "get", "parameters": {"id": "Q-7"}}', "", [GET]),
        (
            "llama3_json",
            '<|python_tag|>{"name": "get", "parameters": {"id": "Q-7"}}; {"name": "list", "parameters": {}}',
            "",
            [GET, ToolCall("list", {})],
        ),
        ("auto", '{"name": "get", "arguments": {"id": "Q-7"}}', "", [GET]),
        ("auto", '<tool_call>{"name": "get", "arguments": {"id": "Q-7"}}</tool_call>', "", [GET]),
    ],
)
def test_calls_are_parsed_per_family(family: str, text: str, content: str, calls: list[ToolCall]) -> None:
    parsed = parse_tool_calls(text, family)
    assert (parsed.content, parsed.calls, parsed.invalid) == (content, calls, False)


@pytest.mark.parametrize(
    ("family", "text", "invalid"),
    [
        ("hermes", "The order shipped.", False),
        ("hermes", '<tool_call>{"name": "get", "arguments": {"id": </tool_call>', True),
        ("hermes", '<tool_call>{"arguments": {}}</tool_call>', True),
        ("hermes", '<tool_call>{"name": "get", "arguments": [1]}</tool_call>', True),
        ("mistral", "[1, 2, 3]", False),
        ("mistral", "[TOOL_CALLS] not json", True),
        ("llama3_json", '{"name": "Alice", "amount": 3}', True),  # a JSON answer, not a call: kept as text
        ("llama3_json", "Sure.", False),
    ],
)
def test_answers_without_a_valid_call_stay_text(family: str, text: str, invalid: bool) -> None:
    parsed = parse_tool_calls(text, family)
    assert parsed.calls == [] and parsed.content == text and parsed.invalid is invalid


def test_family_comes_from_the_template() -> None:
    assert family_of_template("... '<tool_call>\\n' + tool_call | tojson ...") == "hermes"
    assert family_of_template("{{ '[TOOL_CALLS][' }}") == "mistral"
    assert family_of_template('{{ \'{"name": "\' + t.name + \'", "parameters": \' }}') == "llama3_json"
    assert family_of_template("{% for m in messages %}{{ m.content }}{% endfor %}") == "auto"


def test_splitter_never_streams_a_piece_of_a_call() -> None:
    s = CallSplitter("hermes")
    out = [s.feed(d) for d in ["Let", " me check", ". <tool", "_ca", 'll>{"name"', ': "get"}</tool_call>']]
    assert "".join(out) == "Let me check."
    assert s.in_call
    plain = CallSplitter("hermes")
    assert [plain.feed(d) for d in ["a <", "b", " "]] == ["a", " <b", ""]  # "<" and a trailing space wait
    json_family = CallSplitter("llama3_json")
    assert [json_family.feed(d) for d in ["  ", '{"name"', ': "get"}']] == ["", "", ""]
    text = CallSplitter("llama3_json")
    assert "".join(text.feed(d) for d in ["Hi", " there", "!"]) == "Hi there!"


def test_template_probes_and_arguments_as_objects(tiny_model_dir) -> None:
    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.tiny import ensure_tiny_tools_model

    plain = load_tokenizer(str(tiny_model_dir))
    tools = load_tokenizer(str(ensure_tiny_tools_model()))
    assert (supports_tools(plain), renders_tool_calls(plain)) == (False, False)
    assert (supports_tools(tools), renders_tool_calls(tools), tool_call_family(tools)) == (
        True,
        True,
        "hermes",
    )
    call = {"id": "c", "type": "function", "function": {"name": "get", "arguments": '{"id": "Q-7"}'}}
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call], "weight": 1},
    ]
    shown = template_messages(msgs)
    assert shown[1]["tool_calls"][0]["function"]["arguments"] == {"id": "Q-7"} and "weight" not in shown[1]
    assert (
        msgs[1]["tool_calls"][0]["function"]["arguments"] == '{"id": "Q-7"}'
    )  # the caller's copy is untouched
    text = render_chat(tools, msgs)
    assert (
        '{"name": "get", "arguments": {"id": "Q-7"}}' in text
    )  # what the model generates, not double-encoded
    assert parse_tool_calls(
        text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0], "hermes"
    ).calls == [GET]
