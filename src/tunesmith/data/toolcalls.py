"""Tool calls in generated text: which format a chat template teaches, and parsing answers in that format.

Three template families cover the common open models; the family is chosen from the chat template's text:

- ``hermes`` (Hermes, Qwen 2/2.5/3, and templates that write ``<tool_call>``): one
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block per call, content may precede them.
- ``mistral`` (``[TOOL_CALLS]``): ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``. The marker is a
  special token that decoding may drop, so a bare JSON list of such objects is read as calls too.
- ``llama3_json`` (Llama 3.1/3.2 JSON tool calling, templates that write ``"parameters"``): the answer is
  ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``, several separated by ``;``).

A template that renders ``tools`` but matches none of these is parsed with ``auto`` (each family in turn).
An answer that starts like a call but does not parse (bad JSON, no name, arguments not an object) is
``invalid``: the server then returns it as plain content and ``eval`` counts it as an invalid call.
``CallSplitter`` does the same incrementally for streaming: it releases content text until a call may
start, then holds the rest for the parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.render import chat_template_source

FAMILIES = ("hermes", "mistral", "llama3_json")
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the function's name and its arguments (a JSON object)."""

    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        """The arguments as OpenAI sends them (a JSON string)."""
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True)
class ParsedAnswer:
    """A generated answer split into its text ``content`` and its tool ``calls``.

    ``invalid``: the answer started like a tool call in the template's format but did not parse; then
    ``calls`` is empty and ``content`` is the whole answer."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    invalid: bool = False


def tool_call_family(tokenizer: Any) -> str:
    """The call format the model's chat template teaches: one of ``FAMILIES``, or ``auto`` when the
    template shows none of their markers (every family is then tried)."""
    return family_of_template(chat_template_source(tokenizer))


def family_of_template(template: str) -> str:
    """``tool_call_family`` for a template's source text."""
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or '"parameters"' in template or "ipython" in template:
        return "llama3_json"
    return "auto"


def parse_tool_calls(text: str, family: str = "auto") -> ParsedAnswer:
    """Split ``text`` (a generated answer) into content and tool calls in ``family``'s format.

    Raises:
        ValueError: for an unknown family.
    """
    if family == "auto":
        for fam in FAMILIES:
            parsed = parse_tool_calls(text, fam)
            if parsed.calls or parsed.invalid:
                return parsed
        return ParsedAnswer(text)
    if family == "hermes":
        return _parse_hermes(text)
    if family == "mistral":
        return _parse_mistral(text)
    if family == "llama3_json":
        return _parse_llama3(text)
    raise ValueError(f"unknown tool-call family {family!r}; use one of {FAMILIES} or auto")


def call_start(text: str, family: str) -> int:
    """Where a tool call starts in ``text`` (-1: none yet). For the JSON families a call is the whole
    answer, so it starts at the first non-space character when that opens a JSON value."""
    starts = []
    if family in ("hermes", "auto") and "<tool_call>" in text:
        starts.append(text.index("<tool_call>"))
    if family in ("mistral", "auto") and "[TOOL_CALLS]" in text:
        starts.append(text.index("[TOOL_CALLS]"))
    if family in ("llama3_json", "auto") and "<|python_tag|>" in text:
        starts.append(text.index("<|python_tag|>"))
    stripped = text.lstrip()
    opener = {"mistral": "[", "llama3_json": "{", "auto": "[{"}.get(family, "")
    if stripped and stripped[0] in opener:
        starts.append(len(text) - len(stripped))
    return min(starts) if starts else -1


def _markers(family: str) -> list[str]:
    return {
        "hermes": ["<tool_call>"],
        "mistral": ["[TOOL_CALLS]"],
        "llama3_json": ["<|python_tag|>"],
        "auto": ["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"],
    }.get(family, [])


class CallSplitter:
    """Streaming: feed answer text as it is decoded; ``feed`` returns the content that can be sent now
    (never a piece of a tool call, never the start of a marker that may still complete)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.text = ""
        self.sent = 0  # characters of ``text`` released as content
        self.in_call = False

    def feed(self, delta: str) -> str:
        """Add ``delta``; return the content text that is now safe to send."""
        self.text += delta
        if self.in_call:
            return ""
        start = call_start(self.text, self.family)
        if start >= 0:
            self.in_call = True
            end = len(self.text[:start].rstrip())  # the content ends where the call starts
            return self._release(end) if end > self.sent else ""
        if not self.text.strip():
            return ""  # the answer may still open with a JSON call
        # trailing whitespace waits: it is dropped if a call follows it
        return self._release(len(self.text[: len(self.text) - self._held_tail()].rstrip()))

    def _held_tail(self) -> int:
        """Characters at the end of ``text`` that could be the beginning of a marker."""
        hold = 0
        for marker in _markers(self.family):
            for n in range(min(len(marker) - 1, len(self.text)), 0, -1):
                if self.text.endswith(marker[:n]):
                    hold = max(hold, n)
                    break
        return hold

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : upto], upto
        return out


# --------------------------------------------------------------------------- the families


def _call(obj: Any, need_args: bool = False) -> ToolCall | None:
    """A call from ``{"name": ..., "arguments"|"parameters": ...}``; ``need_args``: the arguments key must
    be there (for the JSON families, where a plain JSON answer with a "name" key is not a call)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    key = "arguments" if "arguments" in obj else "parameters"
    if need_args and key not in obj:
        return None
    args = obj.get(key, {})
    if isinstance(args, str):  # some models write the arguments as a JSON string, as OpenAI sends them
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    return ToolCall(obj["name"], args) if isinstance(args, dict) else None


def _parse_hermes(text: str) -> ParsedAnswer:
    start = text.find("<tool_call>")
    if start < 0:
        return ParsedAnswer(text)
    calls = []
    for m in _HERMES.finditer(text, start):
        try:
            call = _call(json.loads(m.group(1)))
        except json.JSONDecodeError:
            call = None
        if call is None:
            return ParsedAnswer(text, invalid=True)
        calls.append(call)
    return ParsedAnswer(text[:start].strip(), calls) if calls else ParsedAnswer(text, invalid=True)


def _parse_mistral(text: str) -> ParsedAnswer:
    marker = text.find("[TOOL_CALLS]")
    body, content = (
        (text[marker + len("[TOOL_CALLS]") :], text[:marker].strip()) if marker >= 0 else (text, "")
    )
    body = body.strip()
    if not body.startswith("["):
        return ParsedAnswer(text, invalid=marker >= 0)
    try:
        items = json.loads(body)
    except json.JSONDecodeError:
        return ParsedAnswer(text, invalid=True)
    calls = [_call(x, need_args=True) for x in items] if isinstance(items, list) and items else [None]
    if any(c is None for c in calls):
        # a bare JSON list that is not a list of calls is an ordinary answer, not a broken call
        return ParsedAnswer(text, invalid=marker >= 0 or _looks_like_calls(items))
    return ParsedAnswer(content, [c for c in calls if c is not None])


def _parse_llama3(text: str) -> ParsedAnswer:
    body = text.strip()
    tagged = body.startswith("<|python_tag|>")
    if tagged:
        body = body[len("<|python_tag|>") :].strip()
    if not body.startswith("{"):
        return ParsedAnswer(text, invalid=tagged)
    decoder, calls, pos = json.JSONDecoder(), [], 0
    while pos < len(body):
        try:
            obj, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return ParsedAnswer(text, invalid=tagged or '"name"' in body)
        call = _call(obj, need_args=True)
        if call is None:
            return ParsedAnswer(text, invalid=tagged or _looks_like_calls([obj]))
        calls.append(call)
        pos = end
        while pos < len(body) and body[pos] in " \n\t;":
            pos += 1
    return ParsedAnswer("", calls)


def _looks_like_calls(items: Any) -> bool:
    return isinstance(items, list) and any(isinstance(x, dict) and "name" in x for x in items)


def load_tools_file(path: Any) -> list[dict[str, Any]]:
    """OpenAI tool definitions from a JSON file: a list of ``{"type": "function", "function": {...}}``
    or an object with a ``tools`` list (a training row).

    Raises:
        TunesmithError: naming the file and what is wrong (unreadable, not JSON, no tool list, a tool
            without ``function.name``).
    """
    from pathlib import Path

    from tunesmith.errors import TunesmithError

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TunesmithError(
            f"Cannot read the tools file {p}: {exc.strerror or exc}.", "Pass a JSON file."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TunesmithError(f"{p} is not JSON: {exc}.", "Write the tool list as JSON.") from None
    tools = data.get("tools") if isinstance(data, dict) else data
    example = '[{"type": "function", "function": {"name": "get_weather", "parameters": {...}}}]'
    if not isinstance(tools, list) or not tools:
        raise TunesmithError(f"{p} holds no tool list.", f"Write a JSON list of tools: {example}.")
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise TunesmithError(f"{p}: tool {i} has no function.name.", f"Each tool looks like {example}.")
    return tools
