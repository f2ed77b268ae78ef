"""Does the model's chat template train what the data says? Checks on every trained assistant turn.

A template is code: it can close the assistant turn with nothing (the next role marker ends it, as in
GLM's), drop ``tool_calls`` or ``tools`` it does not know, or drop the system message. Training then
goes on silently and the damage shows only at inference (endless answers, empty tool-call turns, ignored
instructions). ``check_template`` renders examples with the same masks training uses
(``tokenize.tokenize_chat``) and reports, with the lines and the fix:

- ``eos_not_trained``: a trained assistant turn does not end in an end-of-turn token (one of the
  tokenizer's special tokens, EOS included), so the model never learns to stop. Every trained turn is
  checked, not only the last; a turn cut by ``max_seq_len`` is left to the ``truncation`` warning.
- ``tool_calls_dropped``: an assistant turn with ``tool_calls`` (or ``function_call``) is rendered without
  the called function's name: the model would learn an empty or wrong turn.
- ``tools_dropped``: the row's ``tools`` are given but a tool's name is not in the rendered text.
- ``system_prompt_dropped``: a system message's text is not in the rendered text.

Templates differ by the *shape* of a conversation (roles, tool calls, tools, system), not by its words,
so a sample is checked: the first ``FIRST`` examples plus up to ``PER_SHAPE`` of every shape, at most
``LIMIT`` in all (the findings say how many were checked). ``data check`` reports the findings as
warnings; ``tunesmith train`` refuses to start on them unless ``--force`` (train/data.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.data.quality import Finding
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat
from tunesmith.errors import TunesmithError

FIRST = 50
PER_SHAPE = 3
LIMIT = 300
SHOW = 5  # lines named in a message
CODES = ("eos_not_trained", "tool_calls_dropped", "tools_dropped", "system_prompt_dropped")


@dataclass(frozen=True)
class Example:
    """One conversation as training renders it: its file line, chat messages and the row's ``tools``."""

    line: int
    messages: list[dict[str, Any]]
    tools: Any = None


def check_template(
    tokenizer: Any, examples: Sequence[Example], *, max_len: int | None = None
) -> list[Finding]:
    """Findings (codes in ``CODES``) for a sample of ``examples`` (see the module docstring); [] when the
    template renders and trains every sampled turn as the data says. Examples the template rejects are
    skipped (``data check`` reports them as ``template_error``; training refuses them when it tokenizes)."""
    sample = _sample(examples)
    lines: dict[str, list[int]] = {code: [] for code in CODES}
    stops = stop_ids(tokenizer)
    for ex in sample:
        try:
            tok = tokenize_chat(tokenizer, ex.messages, max_len, tools=ex.tools)
        except TunesmithError:
            continue
        for code, bad in (
            ("eos_not_trained", untrained_turn_end(tok, stops, max_len)),
            ("tool_calls_dropped", _calls_dropped(ex.messages, tok)),
            ("tools_dropped", _tools_dropped(ex.tools, tok.text)),
            ("system_prompt_dropped", _system_dropped(ex.messages, tok.text)),
        ):
            if bad:
                lines[code].append(ex.line)
    checked = f"{len(sample)} example(s) checked" + (
        f" of {len(examples)}" if len(sample) < len(examples) else ""
    )
    return [
        Finding(code, f"{_MESSAGES[code](tokenizer, len(found), _lines(found))} ({checked})", found)
        for code, found in lines.items()
        if found
    ]


def refuse_template_findings(findings: list[Finding], model: str) -> None:
    """Raise before training starts when ``findings`` is not empty (``tunesmith train --force`` skips this).

    Raises:
        TunesmithError: naming every finding (what is wrong, where, and the fix).
    """
    if not findings:
        return
    body = "\n".join(f"  {f.code}: {f.message}" for f in findings)
    raise TunesmithError(
        f"The chat template of {model} would not train what the data says; training refuses to start:\n{body}",
        "Fix the template (a chat_template.jinja beside the model, see docs/training.md) or the data as each "
        "finding says, or pass --force to train anyway.",
    )


def _sample(examples: Sequence[Example]) -> list[Example]:
    chosen = list(examples[:FIRST])
    seen: dict[tuple, int] = {}
    for ex in chosen:
        key = _shape(ex)
        seen[key] = seen.get(key, 0) + 1
    for ex in examples[FIRST:]:
        if len(chosen) >= LIMIT:
            break
        key = _shape(ex)
        if seen.get(key, 0) < PER_SHAPE:
            seen[key] = seen.get(key, 0) + 1
            chosen.append(ex)
    return chosen


def _shape(ex: Example) -> tuple:
    roles = tuple(
        (m.get("role"), bool(m.get("tool_calls") or m.get("function_call")), m.get("weight", 1) != 0)
        for m in ex.messages
    )
    return roles, bool(ex.tools)


def stop_ids(tokenizer: Any) -> set[int]:
    """Token ids that end a turn: the tokenizer's special tokens, EOS included."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def untrained_turn_end(tok: Any, stops: set[int], max_len: int | None) -> bool:
    """Whether a run of trained tokens (one assistant turn) ends in a token that is not a stop token."""
    labels, ids = tok.labels, tok.input_ids
    for i, lab in enumerate(labels):
        ends_run = lab != IGNORE_INDEX and (i + 1 == len(labels) or labels[i + 1] == IGNORE_INDEX)
        if not ends_run:
            continue
        cut = max_len is not None and i + 1 == len(labels) and tok.n_tokens_full > len(labels)
        if not cut and ids[i] not in stops:
            return True
    return False


def _calls_dropped(messages: list[dict[str, Any]], tok: Any) -> bool:
    spans = iter(tok.spans)
    for m in messages:
        if m.get("role") != "assistant":
            continue
        # tokenize_chat gives one span per assistant turn that carries loss, in order
        turn = tok.text[slice(*next(spans, (0, len(tok.text))))] if m.get("weight", 1) != 0 else tok.text
        names = _call_names(m)
        if names and not all(n in turn for n in names):
            return True
    return False


def _call_names(message: dict[str, Any]) -> list[str]:
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append({"function": message["function_call"]})
    names = []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            names.append(fn["name"])
    return names


def _tools_dropped(tools: Any, text: str) -> bool:
    if not isinstance(tools, list):
        return False
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name and name not in text:
            return True
    return False


def _system_dropped(messages: list[dict[str, Any]], text: str) -> bool:
    return any(
        m.get("role") == "system" and isinstance(m.get("content"), str) and m["content"].strip() not in text
        for m in messages
    )


def _lines(found: list[int]) -> str:
    shown = ", ".join(map(str, found[:SHOW]))
    return f"line {shown}" if len(found) == 1 else f"lines {shown}{', ...' if len(found) > SHOW else ''}"


def _eos_message(tokenizer: Any, n: int, where: str) -> str:
    eos = tokenizer.eos_token or "EOS"
    return (
        f"In {n} example(s) ({where}) an assistant turn is trained without an end-of-turn token after it: the "
        f"chat template closes the turn with nothing (or with the next role marker), so the model never learns "
        f"to stop and rambles until max_new_tokens. Use a template that ends every assistant turn with {eos!r} "
        "(write it to chat_template.jinja in the model folder)"
    )


def _calls_message(tokenizer: Any, n: int, where: str) -> str:
    return (
        f"In {n} example(s) ({where}) the chat template drops the assistant's tool_calls: the turn trains as "
        "empty or plain text. Use a model whose template renders tool_calls (its chat_template mentions "
        "tool_calls), or write the call into the assistant's content as the model should produce it"
    )


def _tools_message(tokenizer: Any, n: int, where: str) -> str:
    return (
        f"In {n} example(s) ({where}) the chat template drops the row's tools: the model never sees the tool "
        "schemas it is trained to call. Use a model whose template renders tools, or put the schemas into the "
        "system message"
    )


def _system_message(tokenizer: Any, n: int, where: str) -> str:
    return (
        f"In {n} example(s) ({where}) the chat template drops the system prompt: the model never sees it. Put "
        "the instructions in the first user message, or use a model whose template supports a system role"
    )


_MESSAGES = {
    "eos_not_trained": _eos_message,
    "tool_calls_dropped": _calls_message,
    "tools_dropped": _tools_message,
    "system_prompt_dropped": _system_message,
}
