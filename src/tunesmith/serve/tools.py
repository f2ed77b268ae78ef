"""Tool calling in ``/v1/chat/completions``: checking ``tools``/``tool_choice``, reading calls out of the
answer, and the OpenAI wire shapes of calls (message ``tool_calls`` and streamed ``tool_calls`` deltas).

Design choices:
- **Rendered, never dropped.** A request's ``tools`` go to the model's chat template through the one
  renderer (``data.render.render_chat``), exactly as training rendered a row's ``tools``. A model whose
  template does not write ``tools`` (or ``tool_calls`` in the history) cannot be given them: 400
  ``tools_not_supported``, never a silent answer to a prompt without the tool list.
- **Parsed by the template's family** (``data.toolcalls``: Hermes/Qwen ``<tool_call>``, Mistral
  ``[TOOL_CALLS]``, Llama 3 JSON), chosen from the template's text.
- ``tool_choice``: ``none`` renders the tools and returns the answer as text (no parsing); ``auto`` (the
  default with tools) returns calls when the answer holds them; ``required`` and a named function are
  **validate-and-retry** like JSON ``response_format`` (no constrained decoding): the answer must hold a
  call (to that function), else up to ``JSON_RETRIES`` seeded sampled retries, else 500
  ``invalid_tool_call_output``. A named choice keeps only the calls to that function.
- ``parallel_tool_calls: false`` keeps the first call of an answer that made several.
- Calls to a function that is not in ``tools`` are returned as the model wrote them with ``auto``; they
  never satisfy ``required`` or a named choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tunesmith.data.toolcalls import ParsedAnswer, ToolCall, parse_tool_calls
from tunesmith.serve.errors import APIError, bad_request
from tunesmith.serve.store import new_id


@dataclass(frozen=True)
class ToolRequest:
    """The tool part of one chat request, checked: definitions (as dicts), choice, parallel flag and the
    call format of the model's template."""

    tools: list[dict[str, Any]]
    choice: str  # "none" | "auto" | "required" | "function"
    function: str | None  # the named function when choice == "function"
    parallel: bool
    family: str = "auto"

    @property
    def parses(self) -> bool:
        return self.choice != "none"

    @property
    def must_call(self) -> bool:
        return self.choice in ("required", "function")

    def calls(self, text: str) -> tuple[ParsedAnswer, list[ToolCall]]:
        """The answer's content and the calls to return (after the named-function and parallel rules)."""
        parsed = parse_tool_calls(text, self.family)
        calls = parsed.calls
        if self.choice == "function":
            calls = [c for c in calls if c.name == self.function]
        if not self.parallel:
            calls = calls[:1]
        return parsed, calls

    def accepts(self, text: str) -> bool:
        """Whether ``text`` satisfies a ``required``/named choice (a call to a declared function)."""
        names = {t["function"]["name"] for t in self.tools}
        return any(c.name in names for c in self.calls(text)[1])


def tool_request(body: Any) -> ToolRequest | None:
    """The checked tool fields of a ``wire.ChatRequest`` (None: the request has no tools).

    Raises:
        APIError: 400 when ``tool_choice`` or ``parallel_tool_calls`` come without ``tools``, when a
            named ``tool_choice`` is not one of ``tools``, when two tools share a name, or when tools
            come with a JSON ``response_format``.
    """
    if not body.tools:
        if body.tool_choice not in (None, "none"):
            raise bad_request(
                "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice"
            )
        return None
    tools = [t.model_dump(exclude_none=True) for t in body.tools]
    names = [t["function"]["name"] for t in tools]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise bad_request(f"Two tools are named {dup!r}; tool names must be unique.", param="tools")
    if body.response_format is not None and body.response_format.type != "text":
        raise bad_request(
            "'tools' with a JSON 'response_format' is not supported by this server.",
            param="response_format",
        )
    choice, function = body.tool_choice or "auto", None
    if not isinstance(choice, str):
        function, choice = choice.function.name, "function"
        if function not in names:
            raise bad_request(
                f"tool_choice names the function {function!r}, which is not in 'tools' ({', '.join(names)}).",
                param="tool_choice",
            )
    parallel = True if body.parallel_tool_calls is None else body.parallel_tool_calls
    return ToolRequest(tools, choice, function, parallel)


def check_template(tok: Any, req: ToolRequest | None, messages: list[dict[str, Any]]) -> ToolRequest | None:
    """``req`` with the call format of ``tok``'s template, after checking that the template can render
    what the request holds.

    Raises:
        APIError: 400 ``tools_not_supported`` when ``tools`` (or history ``tool_calls``) are given to a
            model whose chat template does not write them.
    """
    from tunesmith.data.render import renders_tool_calls, supports_tools
    from tunesmith.data.toolcalls import tool_call_family

    if req is not None and not supports_tools(tok):
        raise bad_request(
            "This model's chat template does not support tools: it does not write the request's 'tools' into "
            "the prompt, so the model would answer without seeing them. Send the request without 'tools', or "
            "serve a model whose chat template renders tools (e.g. Qwen 2.5, Llama 3.1, Mistral, Hermes).",
            param="tools",
            code="tools_not_supported",
        )
    if any(m.get("tool_calls") for m in messages) and not renders_tool_calls(tok):
        raise bad_request(
            "This model's chat template does not write assistant 'tool_calls', so the calls in 'messages' "
            "would be dropped from the prompt. Serve a model whose chat template renders tool calls, or send "
            "the calls' results as ordinary text.",
            param="messages",
            code="tools_not_supported",
        )
    if req is None:
        return None
    return ToolRequest(req.tools, req.choice, req.function, req.parallel, tool_call_family(tok))


def history_message(m: Any, i: int) -> dict[str, Any]:
    """The tool fields of request message ``m`` (``tool_calls`` checked, ``tool_call_id``, ``name``).

    Raises:
        APIError: 400 naming the message when a tool call lacks ``function.name`` or its ``arguments``
            are not a string.
    """
    out: dict[str, Any] = {}
    if m.tool_calls:
        for j, call in enumerate(m.tool_calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
                or not isinstance(fn.get("arguments", ""), str)
            ):
                raise bad_request(
                    f"messages[{i}].tool_calls[{j}] needs a function with a 'name' and its 'arguments' as a "
                    'JSON string: {"id": ..., "type": "function", "function": {"name": ..., "arguments": "{}"}}.',
                    param=f"messages.{i}.tool_calls.{j}",
                )
        out["tool_calls"] = m.tool_calls
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def failed(text: str, req: ToolRequest, attempts: int) -> APIError:
    """The 500 for a ``required``/named choice the model did not meet in ``attempts`` tries."""
    want = f"a call to {req.function!r}" if req.choice == "function" else "a tool call"
    return APIError(
        500,
        f"The model did not produce {want} (tool_choice {req.choice if req.choice != 'function' else req.function!r}) "
        f"in {attempts} attempts (last answer: {text[:200]!r}).",
        code="invalid_tool_call_output",
    )


def wire_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Calls in OpenAI's message shape: ``[{id, type: "function", function: {name, arguments (JSON string)}}]``."""
    return [
        {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments_json()},
        }
        for c in calls
    ]


def call_deltas(calls: list[dict[str, Any]], pieces: Any) -> list[dict[str, Any]]:
    """Streamed ``delta`` objects for ``calls`` (wire shape): per call one delta with its index, id, type,
    name and empty arguments, then one per piece of its arguments (``pieces(text)`` splits a string)."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(calls):
        head = {
            "index": i,
            "id": c["id"],
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": ""},
        }
        out.append({"tool_calls": [head]})
        for piece in pieces(c["function"]["arguments"]):
            out.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    return out


def tools_text(req: ToolRequest | None) -> int:
    """Characters the tool definitions add to the prompt's text (for the cheap length check)."""
    return len(json.dumps(req.tools)) if req is not None else 0
