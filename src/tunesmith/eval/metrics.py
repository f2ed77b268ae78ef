"""Metrics per task, as pure functions of answers and references (each has a hand-computed unit test).

Matching is deliberately fair to prompted models (a comparison against a strawman means nothing):

- ``normalize``: lower case, whitespace collapsed, surrounding punctuation and quotes stripped (text metrics).
- ``match_label``: ``tunesmith.data.labels.match``: the exact label first, then a normalised match only where
  it is unambiguous (``C``/``C++``/``C#`` and ``-1``/``1`` stay apart), then the one label named in the answer
  ("The category is billing."). An answer that names no label, or several, is *invalid* (counted wrong, and
  in ``invalid_rate``). ``match_labels`` also says how each answer matched (exact / normalised / in_answer / none).
- Extraction values compare after ``normalize`` of their string form, numbers numerically (``"12.50"`` ==
  ``12.5``); the JSON object may be wrapped in prose or a code fence.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tunesmith.data import labels as labels_mod
from tunesmith.data.labels import MATCH_KINDS, LabelMatch

_PUNCT = string.punctuation + "“”‘’«»`"
_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower case, collapse whitespace, strip surrounding punctuation and quotes."""
    return _WS.sub(" ", str(text)).strip().strip(_PUNCT + " ").lower()


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names (see ``tunesmith.data.labels.match``), or None when it names none or several."""
    return labels_mod.match(answer, labels).label


def match_labels(answers: Sequence[str], labels: Sequence[str]) -> list[LabelMatch]:
    """``tunesmith.data.labels.match`` for every answer: the label (or None) and how it matched."""
    return [labels_mod.match(a, labels) for a in answers]


def match_counts(matches: Sequence[LabelMatch]) -> dict[str, int]:
    """How many answers matched each way: ``{"exact", "normalised", "in_answer", "none"}``."""
    return {k: sum(m.how == k for m in matches) for k in MATCH_KINDS}


# --------------------------------------------------------------------------- classification


def classification_metrics(
    golds: Sequence[str], preds: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels``, per-label precision/recall/F1, confusion matrix, invalid rate.

    ``preds`` holds the matched label or None (invalid answer). The confusion matrix rows are the gold
    labels and its columns the predicted labels plus a last ``(invalid)`` column."""
    _same_length(golds, preds)
    labels = list(labels)
    n = len(golds)
    correct = sum(1 for g, p in zip(golds, preds, strict=True) if p == g)
    per_label: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = sum(1 for g, p in zip(golds, preds, strict=True) if g == lab and p == lab)
        fp = sum(1 for g, p in zip(golds, preds, strict=True) if g != lab and p == lab)
        fn = sum(1 for g, p in zip(golds, preds, strict=True) if g == lab and p != lab)
        prec, rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_label[lab] = {"precision": prec, "recall": rec, "f1": _f1(prec, rec), "support": tp + fn}
    present = [lab for lab in labels if per_label[lab]["support"] > 0] or labels
    cols = [*labels, "(invalid)"]
    matrix = [[0] * len(cols) for _ in labels]
    for g, p in zip(golds, preds, strict=True):
        if g in labels:
            matrix[labels.index(g)][labels.index(p) if p in labels else len(labels)] += 1
    return {
        "accuracy": _ratio(correct, n),
        "macro_f1": sum(per_label[lab]["f1"] for lab in present) / len(present) if present else 0.0,
        "invalid_rate": _ratio(sum(1 for p in preds if p is None), n),
        "per_label": per_label,
        "confusion": {"labels": labels, "columns": cols, "matrix": matrix},
    }


# --------------------------------------------------------------------------- extraction


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in an answer (bare, in a code fence, or the first {...} in prose), else None."""
    text = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    candidates = [fence.group(1)] if fence else []
    candidates.append(text)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def values_equal(a: Any, b: Any) -> bool:
    """Field values compare numerically when both are numbers, else by ``normalize`` of their JSON form."""
    fa, fb = _as_number(a), _as_number(b)
    if fa is not None and fb is not None:
        return abs(fa - fb) <= 1e-9 * max(1.0, abs(fa), abs(fb))
    return normalize(_as_text(a)) == normalize(_as_text(b))


def extraction_metrics(golds: Sequence[dict[str, Any]], answers: Sequence[str]) -> dict[str, Any]:
    """Valid-JSON rate, exact match (every gold field right and no extra field), per-field P/R/F1, micro-F1.

    Per field: a correct value is a true positive; a predicted value that is wrong, or a field the gold
    record does not have, is a false positive; a gold field missing or wrong is a false negative."""
    _same_length(golds, answers)
    parsed = [parse_json_object(a) for a in answers]
    fields: list[str] = []
    for g in golds:
        fields += [k for k in g if k not in fields]
    counts = {f: Counter() for f in fields}
    exact = 0
    for gold, pred in zip(golds, parsed, strict=True):
        pred = pred or {}
        ok = set(pred) == set(gold)
        for f in set(fields) | set(pred):
            c = counts.setdefault(f, Counter())
            in_g, in_p = f in gold, f in pred
            if not (in_g or in_p):
                continue
            if in_g and in_p and values_equal(gold[f], pred[f]):
                c["tp"] += 1
                continue
            ok = False
            c["fp"] += int(in_p)
            c["fn"] += int(in_g)
        exact += int(ok)
    per_field = {}
    for f, c in counts.items():
        prec, rec = _ratio(c["tp"], c["tp"] + c["fp"]), _ratio(c["tp"], c["tp"] + c["fn"])
        per_field[f] = {"precision": prec, "recall": rec, "f1": _f1(prec, rec)}
    tp, fp, fn = (sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn"))
    n = len(golds)
    return {
        "valid_json_rate": _ratio(sum(p is not None for p in parsed), n),
        "exact_match": _ratio(exact, n),
        "field_f1": _f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn)),
        "per_field": per_field,
    }


# --------------------------------------------------------------------------- generation


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 between normalised word tokens."""
    p, r = tokens(prediction), tokens(reference)
    if not p and not r:
        return 1.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    return _f1(common / len(p), common / len(r))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) from the longest common subsequence of word tokens."""
    p, r = tokens(prediction), tokens(reference)
    if not p and not r:
        return 1.0
    if not p or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for x in p:
        cur = [0]
        for j, y in enumerate(r, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    return _f1(lcs / len(p), lcs / len(r))


def format_check(
    answer: str, regex: str | None = None, schema: dict[str, Any] | None = None, max_chars: int | None = None
) -> list[str]:
    """The format rules an answer breaks (empty list = passes). ``regex`` is searched (anchor it yourself)."""
    broken = []
    if regex is not None and not re.search(regex, answer):
        broken.append("regex")
    if schema is not None:
        import jsonschema

        try:
            value: Any = json.loads(answer)
        except (json.JSONDecodeError, RecursionError):
            value = parse_json_object(answer)
        if value is None or not jsonschema.Draft202012Validator(schema).is_valid(value):
            broken.append("json_schema")
    if max_chars is not None and len(answer) > max_chars:
        broken.append("max_length")
    return broken


def generation_metrics(references: Sequence[str], answers: Sequence[str], **rules: Any) -> dict[str, Any]:
    """Mean token-F1, ROUGE-L and exact match; format pass rate when any rule is given."""
    _same_length(references, answers)
    n = len(references)
    out: dict[str, Any] = {
        "token_f1": _mean([token_f1(a, r) for a, r in zip(answers, references, strict=True)]),
        "rouge_l": _mean([rouge_l(a, r) for a, r in zip(answers, references, strict=True)]),
        "exact_match": _ratio(
            sum(normalize(a) == normalize(r) for a, r in zip(answers, references, strict=True)), n
        ),
    }
    if any(v is not None for v in rules.values()):
        out["format_pass_rate"] = _ratio(sum(not format_check(a, **rules) for a in answers), n)
    return out


# --------------------------------------------------------------------------- every task


def consistency(originals: Sequence[str], variants: Sequence[Sequence[str]]) -> float:
    """Share of inputs whose answers to every reworded variant equal (normalised) the original answer."""
    _same_length(originals, variants)
    same = sum(
        all(normalize(v) == normalize(o) for v in vs) for o, vs in zip(originals, variants, strict=True)
    )
    return _ratio(same, len(originals))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "mean": _mean(ms)}


def cost_per_1k_requests(
    seconds_per_request: float,
    tokens_per_request: float,
    usd_per_hour: float,
    usd_per_1k_tokens: float | None = None,
) -> float:
    """USD per 1,000 requests: by tokens when a token price is given, else by machine time."""
    if usd_per_1k_tokens is not None:
        return tokens_per_request * usd_per_1k_tokens
    return seconds_per_request * 1000 * usd_per_hour / 3600


# --------------------------------------------------------------------------- helpers


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} references but {len(b)} answers")


def _as_number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def _as_text(x: Any) -> str:
    return x if isinstance(x, str) else json.dumps(x, sort_keys=True, ensure_ascii=False)
