"""The report's verdict in plain words (issue 17): which candidate to use, by how much, on how many
examples, and what the release gate decided and why. For example:

    The fine-tuned model gets 79 of 80 hold-out examples right; the best prompt (few-shot) gets 59. Use the
    fine-tuned model: 20 more right (+25.0 points). Release gate passed: the fine-tuned model's accuracy
    (0.988) is above the few-shot prompt's (0.738).

The comparison uses the report's first higher-is-better headline metric that every candidate has (accuracy
for labels, exact match for JSON, token F1 for free text, preference accuracy for pairs). "Too close to call"
is said when the difference of two shares is within two standard errors of the difference of two independent
proportions, sqrt(p1(1-p1)/n + p2(1-p2)/n) (the normal approximation; on the same hold-out it is
conservative, as paired answers are positively correlated). Metrics that are not shares of the examples
have no such error here: they are compared as measured.

``verdict_for`` is a pure function of the report; ``eval/run.py``, the preference task and the remote
evaluation store it in ``report.json`` (``EvalReport.verdict``), and the CLI and report.html show it (computed
on the fly for reports written before it existed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tunesmith.errors import TunesmithError
from tunesmith.eval.gate import parse_rules, rule_words
from tunesmith.eval.glossary import candidate_words, metric_info, prompt_name
from tunesmith.results.eval import Candidate, EvalReport, Gate


def with_verdict(report: EvalReport) -> EvalReport:
    """``report`` with its ``verdict`` filled in (call after the gate is evaluated)."""
    return report.model_copy(update={"verdict": verdict_for(report)})


def verdict_for(report: EvalReport) -> str:
    """The verdict sentences of ``report`` (see the module docstring); never raises on a partial report."""
    gate = gate_sentence(report.gate, report.candidates)
    return " ".join(s for s in (_comparison(report), gate) if s)


def primary_metric(report: EvalReport) -> str | None:
    """The metric the verdict compares on: the first higher-is-better headline metric every candidate has
    (else the first one any candidate has), or None."""
    paths = [p for p in report.headline if not metric_info(p).lower_is_better]
    cands = list(report.candidates.values())
    for path in paths:
        if cands and all(c.metric(path) is not None for c in cands):
            return path
    return next((p for p in paths if any(c.metric(p) is not None for c in cands)), None)


def gate_sentence(gate: Gate, candidates: Mapping[str, Candidate] | None = None) -> str:
    """What the gate decided and why, in words (rules of older reports, stored without words, are put in
    words from their rule and values when ``candidates`` are given)."""
    if not gate.rules:
        return "No release gate rules were set (--require)."
    words = [r.words or _old_rule_words(r, candidates or {}) for r in gate.rules]
    if gate.passed:
        return "Release gate passed: " + "; ".join(words) + "."
    failed = [w for w, r in zip(words, gate.rules, strict=True) if not r.passed]
    held = len(gate.rules) - len(failed)
    other = f" ({held} other rule{'s' if held != 1 else ''} held)" if held else ""
    return "Release gate FAILED: " + "; ".join(failed) + other + "."


def _old_rule_words(r: object, candidates: Mapping[str, Candidate]) -> str:
    left, right, passed, text = (getattr(r, k) for k in ("left", "right", "passed", "rule"))
    if left is not None and right is not None:
        try:
            return rule_words(parse_rules([text])[0], left, right, passed, candidates)
        except TunesmithError:
            pass
    return f"{text} ({'holds' if passed else 'fails'})"


def _comparison(report: EvalReport) -> str:
    path = primary_metric(report)
    if path is None:
        return ""
    vals = {n: v for n, c in report.candidates.items() if (v := c.metric(path)) is not None}
    if not vals:
        return ""
    unit = "pairs" if report.task == "preference" else "hold-out examples"
    names = list(vals)
    if "finetuned" in vals and any(n != "finetuned" for n in names):
        first = "finetuned"
        others = [n for n in names if n != first]
        second = max(others, key=lambda n: vals[n])
        label = (
            f"the best prompt ({prompt_name(second)})"
            if len(others) > 1 and second.startswith("base:")
            else candidate_words(second)
        )
    else:
        ranked = sorted(names, key=lambda n: vals[n], reverse=True)
        first, second = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        label = candidate_words(second) if second else ""
    head = f"{_cap(candidate_words(first))} {_score(path, vals[first], report.n, unit, full=True)}"
    if second is None:
        return head + "."
    text = f"{head}; {label} {_score(path, vals[second], report.n, unit, full=False)}."
    return text + " " + _advice(path, first, second, vals, report.n, unit)


def _score(path: str, value: float, n: int, unit: str, *, full: bool) -> str:
    info = metric_info(path)
    if info.share and n:
        k = round(value * n)
        of = f" of {n} {unit}" if full else ""
        if path in ("accuracy", "label_scoring.accuracy", "exact_match"):
            how = {"label_scoring.accuracy": " (by label likelihood)", "exact_match": " exactly"}.get(
                path, ""
            )
            return f"gets {k}{of} right{how}" if full else f"gets {k}"
        if path == "preference_accuracy":
            return f"prefers the chosen answer on {k}{of}" if full else f"on {k}"
        return f"passes {k}{of} ({info.name})" if full else f"passes {k}"
    mean = f" (mean over {n} {unit})" if full and n else ""
    return f"scores {value:.3f} {info.name}{mean}" if full else f"{value:.3f}"


def _advice(path: str, first: str, second: str, vals: dict[str, float], n: int, unit: str) -> str:
    info = metric_info(path)
    a, b = vals[first], vals[second]
    diff = a - b
    if info.share and n:
        k = abs(round(a * n) - round(b * n))
        noise = 2 * math.sqrt(max(a * (1 - a), 0) / n + max(b * (1 - b), 0) / n)
        if k == 0:
            return f"Neither is better: both get the same count on {n} {unit}."
        if abs(diff) <= noise:
            return (
                f"Neither is clearly better on {n} {unit}: a difference of {k} is within what chance gives "
                "(two standard errors); a larger hold-out would tell them apart."
            )
        more = f"{k} more {'right' if path != 'preference_accuracy' else 'pairs'}"
        points = f"{abs(diff) * 100:.1f} points"
    else:
        if round(a, 3) == round(b, 3):
            return f"The two score the same {info.name} on {n} {unit}."
        more, points = f"{abs(diff):.3f} more {info.name}", ""
    better, worse = (first, second) if diff > 0 else (second, first)
    if worse != "finetuned":
        return f"Use {candidate_words(better)}: {more}" + (f" (+{points})." if points else ".")
    than = f"{more} than the fine-tuned model" + (f" (+{points})" if points else "")
    return f"Use {candidate_words(better)}: it gets {than}; fine-tuning did not pay here."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
