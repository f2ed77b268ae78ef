"""Tool-calling rows: chat rows whose reference answer (the last assistant turn) makes tool calls.

The prompt is the conversation before that turn with the row's ``tools`` rendered by the model's chat
template (every candidate: zero-shot, few-shot, fine-tuned). Each answer is parsed into calls with the
parsers of ``data.toolcalls`` (``auto``: the answer's own markers say its format: Hermes/Qwen
``<tool_call>``, Mistral ``[TOOL_CALLS]``, Llama 3 JSON), and scored against the reference calls:

- ``valid_call_rate``: share of call rows whose answer parses into at least one well-formed call (a name,
  arguments that are a JSON object); an answer in plain text, or a call that does not parse, is not one.
- ``function_name_accuracy``: the answer calls exactly the reference's functions (as a multiset).
- ``argument_exact_match``: the answer's calls equal the reference's, names and arguments (as a multiset of
  calls; argument objects compared as parsed JSON, so key order and spacing do not matter).
- ``argument_f1``: per row, F1 of the ``(function, argument name, value)`` triples of the answer against
  the reference's; averaged over call rows (precision/recall alongside).
- ``call_decision_accuracy``: over every row, whether the answer made a call exactly when the reference
  did (rows whose reference is text count here only).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.data.toolcalls import ToolCall, parse_tool_calls
from tunesmith.eval import metrics as M
from tunesmith.eval.tasks.base import Scored, TextTask
from tunesmith.results.eval import Applied

TOOL_HEADLINE = (
    "argument_exact_match",
    "function_name_accuracy",
    "argument_f1",
    "valid_call_rate",
    "call_decision_accuracy",
    "consistency",
)
HOW = (
    "answers parsed into tool calls (Hermes <tool_call>, Mistral [TOOL_CALLS] or Llama 3 JSON, recognised "
    "by their markers) and compared with the reference calls: valid_call_rate, function_name_accuracy "
    "(same functions), argument_exact_match (same calls and arguments, as parsed JSON), argument_f1 "
    "((function, argument, value) triples), call_decision_accuracy (called exactly when the reference did)"
)


def reference_calls(record: dict[str, Any]) -> list[ToolCall]:
    """The calls of a chat row's last assistant message (empty when it answers in text)."""
    last = record["messages"][-1] if record.get("messages") else {}
    calls = []
    for c in last.get("tool_calls") or []:
        fn = c.get("function", c) if isinstance(c, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = {"_raw": args}
        calls.append(ToolCall(str(fn.get("name", "")), args if isinstance(args, dict) else {"_value": args}))
    return calls


def has_tool_calls(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether any row's reference answer makes a tool call (the hold-out is then a tool-call task)."""
    return any(reference_calls(r) for r in rows if isinstance(r.get("messages"), list))


@dataclass(frozen=True)
class ToolCallTask(TextTask):
    """Chat rows whose reference answers are tool calls (see the module docstring)."""

    name: str = "chat"
    headline: tuple[str, ...] = TOOL_HEADLINE
    applied: Applied = field(
        default_factory=lambda: Applied(
            families=["tool_calls"],
            reason="the reference answers are tool calls: scored by parsing the answers' calls",
        )
    )
    free_text: bool = False

    def reference(self, record: dict[str, Any]) -> str:
        """The reference calls as JSON (``[{"name", "arguments"}]``), or the text answer."""
        calls = reference_calls(record)
        if not calls:
            return super().reference(record)
        return json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)

    def answer_message(self, record: dict[str, Any]) -> dict[str, Any]:
        """The reference turn as the template renders it (with its ``tool_calls``), for few-shot prompts."""
        return {k: v for k, v in record["messages"][-1].items() if k != "weight"}

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        """The tool-call metrics of ``answers`` (see the module docstring)."""
        return Scored(tool_call_metrics([reference_calls(r) for r in rows], answers), HOW)

    def answer_key(self, answer: str) -> str:
        """Answers making the same calls are the same answer; else the normalised text."""
        calls = parse_tool_calls(answer).calls
        return _calls_key(calls) if calls else M.normalize(answer)

    def correct(self, record: dict[str, Any], answer: str) -> bool:
        """The answer makes exactly the reference's calls (or, for a text reference, the same text)."""
        gold = reference_calls(record)
        if not gold:
            return not parse_tool_calls(answer).calls and M.normalize(answer) == M.normalize(
                super().reference(record)
            )
        return _calls_key(parse_tool_calls(answer).calls) == _calls_key(gold)


def calls_as_text(tool_calls: Sequence[Any]) -> str:
    """OpenAI ``tool_calls`` (SDK objects or dicts) as Hermes ``<tool_call>`` text, so calls an API
    returned parsed are scored by the same parser as calls a local model writes."""
    out = []
    for c in tool_calls:
        fn = c.get("function") if isinstance(c, dict) else c.function
        name = fn.get("name") if isinstance(fn, dict) else fn.name
        args = fn.get("arguments") if isinstance(fn, dict) else fn.arguments
        try:
            parsed = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            parsed = args
        out.append("<tool_call>" + json.dumps({"name": name, "arguments": parsed}) + "</tool_call>")
    return "".join(out)


def tool_call_metrics(golds: Sequence[list[ToolCall]], answers: Sequence[str]) -> dict[str, Any]:
    """Tool-call metrics of ``answers`` against the reference calls ``golds`` (same order); rates are
    over the rows whose reference makes calls, ``call_decision_accuracy`` over every row."""
    n_call = n_valid = n_names = n_exact = 0
    f1s, precisions, recalls, decisions = [], [], [], []
    for gold, answer in zip(golds, answers, strict=True):
        parsed = parse_tool_calls(answer)
        got = parsed.calls
        decisions.append(bool(got) == bool(gold))
        if not gold:
            continue
        n_call += 1
        n_valid += bool(got)
        n_names += Counter(c.name for c in got) == Counter(c.name for c in gold)
        n_exact += _calls_key(got) == _calls_key(gold)
        p, r, f = _triple_prf(got, gold)
        precisions.append(p)
        recalls.append(r)
        f1s.append(f)
    return {
        "valid_call_rate": n_valid / n_call if n_call else 0.0,
        "function_name_accuracy": n_names / n_call if n_call else 0.0,
        "argument_exact_match": n_exact / n_call if n_call else 0.0,
        "argument_f1": sum(f1s) / n_call if n_call else 0.0,
        "argument_precision": sum(precisions) / n_call if n_call else 0.0,
        "argument_recall": sum(recalls) / n_call if n_call else 0.0,
        "call_decision_accuracy": sum(decisions) / len(decisions) if decisions else 0.0,
        "n_call_rows": n_call,
    }


def _calls_key(calls: Sequence[ToolCall]) -> str:
    return json.dumps(sorted(json.dumps([c.name, c.arguments], sort_keys=True) for c in calls))


def _triples(calls: Sequence[ToolCall]) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for c in calls:
        if not c.arguments:  # a call without arguments still counts, by its name
            out[(c.name, "", "")] += 1
        for k, v in c.arguments.items():
            out[(c.name, k, json.dumps(v, sort_keys=True))] += 1
    return out


def _triple_prf(got: Sequence[ToolCall], gold: Sequence[ToolCall]) -> tuple[float, float, float]:
    g, r = _triples(got), _triples(gold)
    hit = sum((g & r).values())
    p = hit / sum(g.values()) if g else 0.0
    rc = hit / sum(r.values()) if r else 0.0
    return p, rc, (2 * p * rc / (p + rc) if p + rc else 0.0)
