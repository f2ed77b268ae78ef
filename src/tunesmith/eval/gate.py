"""The release gate: rules like ``finetuned.accuracy>=0.9`` or ``finetuned.accuracy>base:few-shot.accuracy``.

A side is a number or ``<candidate>.<metric path>``; the metric path is looked up in the candidate's
``metrics`` (``label_scoring.accuracy``, ``per_label.billing.f1``) or, when it starts with ``latency_ms``,
in its latency summary. Rules are parsed before any model runs (a typo fails in a second, not after the
evaluation); a rule naming a candidate or metric the report does not have fails the gate with a message
that lists what exists. Each rule's outcome is also put in plain words (``GateRule.words``, names from
``eval/glossary.py``) for the verdict, the report and the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.eval.glossary import candidate_words, metric_info
from tunesmith.results.eval import Candidate, Gate, GateRule

_RULE = re.compile(r"^\s*(?P<left>[^<>=!]+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<right>[^<>=!]+?)\s*$")
_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: abs(a - b) <= 1e-12,
    "!=": lambda a, b: abs(a - b) > 1e-12,
}


@dataclass(frozen=True)
class Rule:
    text: str
    left: str
    op: str
    right: str


def parse_rules(rules: list[str]) -> list[Rule]:
    """Parse every rule or raise one error naming the bad rule and the expected form."""
    out = []
    for text in rules:
        m = _RULE.match(text)
        if not m:
            raise TunesmithError(
                f"Gate rule {text!r} is not of the form LEFT OP RIGHT.",
                'Example: --require "finetuned.accuracy>=0.9" --require "finetuned.accuracy>base:few-shot.accuracy" '
                "(OP is one of >=, <=, >, <, ==, !=; a side is a number or candidate.metric).",
            )
        for side in (m["left"], m["right"]):
            if _number(side) is None and "." not in side:
                raise TunesmithError(
                    f"Gate rule {text!r}: {side!r} is neither a number nor candidate.metric.",
                    "Write e.g. finetuned.accuracy.",
                )
        out.append(Rule(text, m["left"], m["op"], m["right"]))
    return out


def evaluate_gate(rules: list[str], candidates: Mapping[str, Candidate]) -> Gate:
    """The verdict of every rule on a report's candidates (no rules: passed)."""
    results = []
    for rule in parse_rules(rules):
        try:
            left, right = _value(rule.left, candidates), _value(rule.right, candidates)
        except KeyError as exc:
            msg = str(exc.args[0])
            words = f"the rule {rule.text} cannot be checked: {msg}"
            results.append(GateRule(rule=rule.text, passed=False, message=msg, words=words))
            continue
        ok = bool(_OPS[rule.op](left, right))
        verdict = "holds" if ok else "FAILED"
        results.append(
            GateRule(
                rule=rule.text,
                passed=ok,
                left=left,
                right=right,
                message=f"{rule.left} = {left:.4g} {rule.op} {rule.right} = {right:.4g}: {verdict}",
                words=rule_words(rule, left, right, ok, candidates),
            )
        )
    return Gate(passed=all(r.passed for r in results), rules=results)


_OP_WORDS = {  # (holds, fails)
    ">": ("is above", "is not above"),
    ">=": ("is at least", "is below"),
    "<": ("is below", "is not below"),
    "<=": ("is at most", "is above"),
    "==": ("equals", "does not equal"),
    "!=": ("differs from", "equals"),
}


def rule_words(rule: Rule, left: float, right: float, ok: bool, candidates: Mapping[str, Candidate]) -> str:
    """The rule and its outcome in plain words, e.g. ``the fine-tuned model's accuracy (0.988) is above
    the few-shot prompt's (0.738)`` or ``the fine-tuned model's accuracy (0.700) is below 0.75``."""
    lname, lpath = _split(rule.left, candidates)
    rname, rpath = _split(rule.right, candidates)
    lw = _side_words(rule.left, lname, lpath, left)
    if rname is not None and lname is not None and rpath == lpath:  # same metric: "the few-shot prompt's (x)"
        rw = f"{candidate_words(rname)}'s ({_num(right, rpath)})"
    else:
        rw = _side_words(rule.right, rname, rpath, right)
        if rname is None and (lpath or "").startswith("latency_ms"):
            rw += " ms"
    return f"{lw} {_OP_WORDS[rule.op][0 if ok else 1]} {rw}"


def _split(side: str, candidates: Mapping[str, Candidate]) -> tuple[str | None, str | None]:
    names = sorted((n for n in candidates if side.startswith(n + ".")), key=len, reverse=True)
    return (names[0], side[len(names[0]) + 1 :]) if names else (None, None)


def _side_words(text: str, name: str | None, path: str | None, value: float) -> str:
    if name is None or path is None:
        return text.strip()
    return f"{candidate_words(name)}'s {metric_info(path).name} ({_num(value, path)})"


def _num(value: float, path: str | None) -> str:
    if path and path.startswith("latency_ms"):
        return f"{value:,.0f} ms"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


def _value(side: str, candidates: Mapping[str, Candidate]) -> float:
    num = _number(side)
    if num is not None:
        return num
    names = sorted((n for n in candidates if side.startswith(n + ".")), key=len, reverse=True)
    if not names:
        raise KeyError(
            f"{side!r}: no candidate of that name in this report (candidates: {', '.join(candidates)})."
        )
    name = names[0]
    path = side[len(name) + 1 :]
    cand = candidates[name]
    value = cand.metric(path)
    if value is not None:
        return value
    node: Any = (
        cand.latency_ms.model_dump() if path.startswith("latency_ms") and cand.latency_ms else cand.metrics
    )
    parts = path.split(".")[1:] if path.startswith("latency_ms") else path.split(".")
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            options = ", ".join(
                k for k, v in (node.items() if isinstance(node, dict) else []) if not isinstance(v, list)
            )
            raise KeyError(f"{side!r}: {name} has no metric {path!r} (available here: {options or 'none'}).")
        node = node[part]
    raise KeyError(f"{side!r} is not a number (it is {type(node).__name__}).")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
