"""The one prompt renderer: every layer that turns a conversation into model input calls ``render_chat``.

Training (``tokenize.tokenize_chat``), evaluation and ``tunesmith chat`` (``models.generate`` through
``tokenize.prompt_ids``), the server (``serve.prompts.fit_prompt``) and the exporters all render with this
function, so the same conversation (system prompt, turns, ``tools``, assistant ``tool_calls``, ``tool``
results) is the same text, hence the same token ids, everywhere
(``tests/integration/data/test_render_parity.py``).

Design choices:
- **The model's own chat template** (``tokenizer.apply_chat_template``), given ``tools`` whenever the
  conversation has them: a template that reads ``tools`` writes the tool list where the model expects it.
- **Tool-call arguments as objects.** OpenAI messages carry ``function.arguments`` as a JSON *string*;
  Hugging Face chat templates (Qwen, Llama 3.1, Mistral, Hermes) expect a dict and write it with
  ``tojson``, so a string would be written double-encoded (``"{\\"city\\": ...}"``), which is not what
  the model produces. Arguments that parse as a JSON object are passed as that object (what vLLM does
  too); a template that fails on objects (one that concatenates ``arguments`` as a string) is rendered
  with the original strings instead. Either way the choice depends on the template only, so every path
  makes the same one.
- ``weight`` (a training-only key) is never shown to the template.
- ``supports_tools``/``renders_tool_calls`` probe the template by rendering a sentinel tool (call) and
  looking for its name in the text: a template that ignores ``tools`` has no tool support, whatever its
  source says.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from tunesmith.errors import TunesmithError

_PROBE = "tunesmith_probe_function"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _PROBE,
        "description": "probe",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
    },
}


def render_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The conversation as the model's chat template writes it (text, not yet tokenized).

    ``messages``: OpenAI-style chat messages (``role``, ``content``, optional ``tool_calls``,
    ``tool_call_id``, ``name``; a training ``weight`` is ignored). ``tools``: OpenAI tool definitions
    (``[{"type": "function", "function": {name, description, parameters}}]``) or None.
    ``add_generation_prompt``: end with the opening of an assistant turn (what inference feeds).

    Raises:
        TunesmithError: when the chat template refuses the conversation (a role or order it does not take).
    """
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
    if tools:
        kwargs["tools"] = tools
    structured = template_messages(messages, parse_arguments=True)
    try:
        try:
            return tokenizer.apply_chat_template(structured, **kwargs)
        except Exception:  # noqa: BLE001 - a template that takes arguments as strings only
            plain = template_messages(messages, parse_arguments=False)
            if plain == structured:
                raise
            return tokenizer.apply_chat_template(plain, **kwargs)
    except Exception as exc:  # noqa: BLE001 - template errors are user-facing
        raise TunesmithError(
            f"The chat template failed on this conversation: {exc}",
            "Check the roles and order of the messages.",
        ) from exc


def template_messages(messages: list[dict[str, Any]], parse_arguments: bool = True) -> list[dict[str, Any]]:
    """The messages as handed to the template: without ``weight``; with ``parse_arguments``, every
    ``tool_calls[].function.arguments`` that is a JSON object string replaced by that object."""
    out = []
    for m in messages:
        msg = {k: v for k, v in m.items() if k != "weight"}
        if parse_arguments and isinstance(msg.get("tool_calls"), list):
            msg["tool_calls"] = [_structured_call(c) for c in msg["tool_calls"]]
        out.append(msg)
    return out


def _structured_call(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = call["function"]
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError:
            return call
        if isinstance(parsed, dict):
            return {**call, "function": {**fn, "arguments": parsed}}
    return call


def chat_template_source(tokenizer: Any) -> str:
    """The template text (the default one when a tokenizer holds several named templates); '' if none."""
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):
        tpl = tpl.get("default") or tpl.get("tool_use") or next(iter(tpl.values()), "")
    return tpl if isinstance(tpl, str) else ""


def supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template writes a request's ``tools`` into the prompt."""
    return _probe(tokenizer)[0]


def renders_tool_calls(tokenizer: Any) -> bool:
    """Whether the chat template writes an assistant message's ``tool_calls`` (not just its content)."""
    return _probe(tokenizer)[1]


def _probe(tokenizer: Any) -> tuple[bool, bool]:
    key = chat_template_source(tokenizer)
    return _probe_cached(key, tokenizer) if key else (False, False)


@functools.lru_cache(maxsize=64)
def _probe_cached(template: str, tokenizer: Any) -> tuple[bool, bool]:
    user = {"role": "user", "content": "hi"}
    try:
        with_tools = _PROBE in render_chat(tokenizer, [user], tools=[_PROBE_TOOL], add_generation_prompt=True)
    except TunesmithError:
        with_tools = False
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": _PROBE, "arguments": '{"x": "y"}'}}
        ],
    }
    try:
        with_calls = _PROBE in render_chat(tokenizer, [user, call], tools=[_PROBE_TOOL])
    except TunesmithError:
        with_calls = False
    return with_tools, with_calls
