"""Quality warnings: duplicates, near-duplicates, contradictions, hold-out leaks, label balance, length
bias, personal data and low diversity. Each returns ``Finding`` objects with the lines involved.

Every threshold is a named constant below and in docs/data.md.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunesmith.data.neardup import find_groups, normalize_many
from tunesmith.data.pii import find_pii

NEAR_DUP_JACCARD = 0.7  # word-bigram Jaccard at or above which two examples are near-duplicates (one changed word in a 12-word example is ~0.7-0.8)
IMBALANCE_RATIO = 10.0  # largest / smallest label count
IMBALANCE_MAJORITY = 0.9  # or one label holds this share
RARE_LABEL_MIN = 5  # fewer examples than this: too few to learn, and a split leaves none for the hold-out
LENGTH_RATIO = 3.0  # median input length of one label vs another
HEAVY_TAIL_RATIO = 8.0  # p99 output length vs median
PREF_LONGER_SHARE = 0.9  # the preferred answer is the longer one in this share of pairs
LOW_DIV_SAME_OUTPUT = 0.5  # one (non-label) answer for this share of examples
LOW_DIV_OPENING = 0.6  # one 4-word opening for this share of inputs
LOW_DIV_DISTINCT2 = 0.1  # distinct word bigrams / all word bigrams of the inputs
LABEL_MAX_WORDS = 3  # chat answers this short, from a small set, are treated as labels
LABEL_MAX_DISTINCT = 50
SHOW = 8  # lines quoted in a message


@dataclass(frozen=True)
class Finding:
    """A quality warning: a stable code, a message that says what to do, and the lines involved."""

    code: str
    message: str
    lines: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "lines": self.lines}


@dataclass(frozen=True)
class View:
    """What the checks compare: the input, the expected output and (for labelled data) the label."""

    line: int
    input: str
    output: str
    label: str | None = None
    rejected: str | None = None  # preference pairs


@dataclass(frozen=True)
class Normalized:
    """``normalize_text`` of every view's input, output and rejected answer, computed once per check."""

    input: list[str]
    output: list[str]
    full: list[str]  # input + output + rejected: the text compared for duplicates


def normalize_views(views: Sequence[View]) -> Normalized:
    ins = normalize_many([v.input for v in views])
    outs = normalize_many([v.output for v in views])
    rej = (
        normalize_many([v.rejected or "" for v in views])
        if any(v.rejected for v in views)
        else [""] * len(views)
    )
    full = [" ".join(x for x in parts if x) for parts in zip(ins, outs, rej, strict=True)]
    return Normalized(ins, outs, full)


def view_of(line: int, record: dict[str, Any], task: str) -> View:
    if task == "chat":
        msgs = record["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        inp = "\n".join(f"{m['role']}: {m['content']}" for m in msgs[:last])
        return View(
            line, inp, msgs[last]["content"] or json.dumps(msgs[last].get("tool_calls"), sort_keys=True)
        )
    if task == "completion":
        return View(line, record["prompt"], record["completion"])
    if task == "classification":
        return View(line, record["text"], record["label"], record["label"])
    if task == "extraction":
        return View(line, record["text"], json.dumps(record["fields"], sort_keys=True, ensure_ascii=False))
    if task == "preference":
        inp = "\n".join(f"{m['role']}: {m['content']}" for m in record["prompt"])
        return View(line, inp, record["chosen"][0]["content"], None, record["rejected"][0]["content"])
    return View(line, record["text"], "")


def infer_labels(views: list[View]) -> list[View]:
    """Chat data whose answers are a few short strings (a converted classification set) gets labels."""
    if not views or any(v.label is not None for v in views) or views[0].rejected is not None:
        return views
    outputs = [v.output.strip() for v in views]
    distinct = set(outputs)
    short = all(0 < len(o.split()) <= LABEL_MAX_WORDS for o in outputs)
    if len(views) >= 10 and short and len(distinct) <= min(LABEL_MAX_DISTINCT, len(views) // 2):
        return [View(v.line, v.input, v.output, o) for v, o in zip(views, outputs, strict=True)]
    return views


# --------------------------------------------------------------------------- duplicates


def duplicates(
    views: Sequence[View], holdout: Sequence[View] = (), norm: Normalized | None = None
) -> list[Finding]:
    """duplicate, near_duplicate, contradiction and holdout_leak in one near-duplicate pass."""
    n = len(views)
    if not views:
        return []
    norm = norm or normalize_views(views)
    hnorm = normalize_views(holdout) if holdout else Normalized([], [], [])
    groups = find_groups(norm.full + hnorm.full, NEAR_DUP_JACCARD, normalized=True)
    out: list[Finding] = []
    exact_sets = [[i for i in g if i < n] for g in groups.members("exact")]
    exact_sets = [g for g in exact_sets if len(g) > 1]
    if exact_sets:
        lines = [views[i].line for g in exact_sets for i in g[1:]]
        pairs = "; ".join("lines " + ", ".join(str(views[i].line) for i in g[:4]) for g in exact_sets[:SHOW])
        out.append(
            Finding(
                "duplicate",
                f"{len(lines)} example(s) repeat an earlier one ({pairs}). Repeats weigh those examples more and leak into any split; keep one copy (`tunesmith data split` keeps copies together).",
                sorted(lines),
            )
        )
    near_sets = []
    for g in groups.members("group"):
        tr = [i for i in g if i < n]
        if len(tr) > 1 and len({int(groups.exact[i]) for i in tr}) > 1:
            near_sets.append(tr)
    if near_sets:
        lines = sorted(views[i].line for g in near_sets for i in g)
        pairs = "; ".join("lines " + ", ".join(str(views[i].line) for i in g[:4]) for g in near_sets[:SHOW])
        out.append(
            Finding(
                "near_duplicate",
                f"{len(near_sets)} group(s) of near-identical examples (word overlap >= {NEAR_DUP_JACCARD:.0%}): {pairs}. Keep the best version of each, or vary them.",
                lines,
            )
        )
    out += _contradictions(views, norm)
    if holdout:
        out += _leaks(views, holdout, groups, norm, hnorm)
    return out


def _contradictions(views: Sequence[View], norm: Normalized) -> list[Finding]:
    keys, outs = norm.input, norm.output
    by_input: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if k:
            by_input[k].append(i)
    clashes = [idx for idx in by_input.values() if len(idx) > 1 and len({outs[i] for i in idx}) > 1]
    if not clashes:
        return []
    lines = sorted(views[i].line for idx in clashes for i in idx)
    shown = "; ".join("lines " + ", ".join(str(views[i].line) for i in idx[:4]) for idx in clashes[:SHOW])
    return [
        Finding(
            "contradiction",
            f"{len(clashes)} input(s) appear with different outputs ({shown}). The model cannot learn both; fix the labels or answers so each input has one.",
            lines,
        )
    ]


def _leaks(
    views: Sequence[View], holdout: Sequence[View], groups: Any, norm: Normalized, hnorm: Normalized
) -> list[Finding]:
    n = len(views)
    pairs: list[tuple[int, int]] = []
    for g in groups.members("group"):
        tr = [i for i in g if i < n]
        ho = [i - n for i in g if i >= n]
        if tr and ho:
            pairs += [(views[t].line, holdout[h].line) for t in tr for h in ho[:1]]
    train_inputs = {
        k: views[i].line
        for i, k in enumerate(normalize_many([v.input for v in views]))
        if len(k.split()) >= 3
    }
    for j, k in enumerate(normalize_many([v.input for v in holdout])):
        if k in train_inputs:
            pairs.append((train_inputs[k], holdout[j].line))
    if not pairs:
        return []
    pairs = sorted(set(pairs))
    shown = ", ".join(f"train {a} ~ hold-out {b}" for a, b in pairs[:SHOW])
    return [
        Finding(
            "holdout_leak",
            f"{len(pairs)} hold-out example(s) are exact or near copies of training examples, or share their input ({shown}). Hold-out scores would be inflated; remove them from one side or re-split with `tunesmith data split`. Lines are training-file lines.",
            sorted({a for a, _ in pairs}),
        )
    ]


# --------------------------------------------------------------------------- labels and lengths


def label_balance(views: Sequence[View]) -> list[Finding]:
    labelled = [v for v in views if v.label is not None]
    if not labelled:
        return []
    counts = Counter(v.label for v in labelled)
    out: list[Finding] = []
    if len(counts) >= 2:
        (top, n_top), (low, n_low) = counts.most_common()[0], counts.most_common()[-1]
        if n_top / n_low >= IMBALANCE_RATIO or n_top / len(labelled) >= IMBALANCE_MAJORITY:
            lines = [v.line for v in labelled if v.label == top]
            out.append(
                Finding(
                    "label_imbalance",
                    f"Label {top!r} has {n_top} examples ({n_top / len(labelled):.0%}), {low!r} only {n_low}. The model will lean to {top!r}; add examples of the small labels or down-sample {top!r} (lines: the {top!r} examples).",
                    lines,
                )
            )
    elif len(counts) == 1:
        only = next(iter(counts))
        out.append(
            Finding(
                "label_imbalance",
                f"Every example has the label {only!r}: there is nothing to learn. Add examples of the other labels.",
                [v.line for v in labelled],
            )
        )
    rare = sorted(label for label, c in counts.items() if c < RARE_LABEL_MIN and len(counts) > 1)
    if rare:
        lines = sorted(v.line for v in labelled if v.label in rare)
        desc = ", ".join(f"{r!r} ({counts[r]})" for r in rare[:SHOW])
        out.append(
            Finding(
                "rare_label",
                f"{len(rare)} label(s) have fewer than {RARE_LABEL_MIN} examples: {desc}. Add examples, merge them into a broader label, or drop them.",
                lines,
            )
        )
    return out


def length_bias(views: Sequence[View]) -> list[Finding]:
    out: list[Finding] = []
    labelled = [v for v in views if v.label is not None]
    if labelled:
        by_label: dict[str, list[int]] = defaultdict(list)
        for v in labelled:
            by_label[v.label].append(len(v.input.split()))
        med = {k: statistics.median(x) for k, x in by_label.items() if len(x) >= RARE_LABEL_MIN}
        if len(med) >= 2:
            hi, lo = max(med, key=med.get), min(med, key=med.get)
            if med[hi] >= LENGTH_RATIO * max(med[lo], 1):
                lines = [v.line for v in labelled if v.label == hi]
                out.append(
                    Finding(
                        "length_imbalance",
                        f"Inputs labelled {hi!r} are much longer (median {med[hi]:.0f} words) than those labelled {lo!r} (median {med[lo]:.0f}): length alone predicts the label, and the model may learn that shortcut. Add long {lo!r} and short {hi!r} examples (lines: the {hi!r} examples).",
                        lines,
                    )
                )
    pairs = [v for v in views if v.rejected is not None]
    if len(pairs) >= 10:
        longer = [v.line for v in pairs if len(v.output) > len(v.rejected or "")]
        share = len(longer) / len(pairs)
        if share >= PREF_LONGER_SHARE:
            out.append(
                Finding(
                    "length_imbalance",
                    f"The preferred answer is the longer one in {share:.0%} of pairs: preference training will learn that longer is better. Add pairs where the better answer is the shorter one.",
                    longer,
                )
            )
    elif views and views[0].label is None and any(v.output for v in views):
        lens = np.array([len(v.output.split()) for v in views])
        median, p99 = float(np.median(lens)), float(np.percentile(lens, 99))
        if len(views) >= 20 and p99 >= HEAVY_TAIL_RATIO * max(median, 1) and p99 >= 50:
            lines = [v.line for v, n in zip(views, lens, strict=True) if n >= p99]
            out.append(
                Finding(
                    "length_imbalance",
                    f"Answer lengths have a heavy tail: the longest 1% have >= {p99:.0f} words against a median of {median:.0f}. These few examples dominate the loss and may be truncated; check them, split or shorten them.",
                    lines,
                )
            )
    return out


# --------------------------------------------------------------------------- pii and diversity


def pii(views: Sequence[View]) -> list[Finding]:
    kinds: Counter[str] = Counter()
    lines: list[int] = []
    example = ""
    for v in views:
        hits = find_pii(f"{v.input}\n{v.output}\n{v.rejected or ''}")
        if hits:
            lines.append(v.line)
            kinds.update(h.kind for h in hits)
            if not example:
                example = f"line {v.line}: {hits[0].kind} {_mask(hits[0].text)}"
    if not lines:
        return []
    names = {
        "email": "e-mail address(es)",
        "phone": "phone number(s)",
        "card": "card number(s) (Luhn-valid)",
        "iban": "IBAN(s) (checksum-valid)",
    }
    desc = ", ".join(f"{c} {names[k]}" for k, c in kinds.most_common())
    return [
        Finding(
            "pii",
            f"Personal data in {len(lines)} example(s): {desc}; e.g. {example}. A fine-tuned model can repeat what it was trained on: remove or pseudonymise it.",
            lines,
        )
    ]


def _mask(s: str) -> str:
    return s[:2] + "*" * max(len(s) - 4, 1) + s[-2:] if len(s) > 4 else "****"


def diversity(views: Sequence[View], norm: Normalized | None = None) -> list[Finding]:
    if len(views) < 20:
        return []
    norm = norm or normalize_views(views)
    out: list[Finding] = []
    if views[0].label is None and any(v.output for v in views):
        outs = norm.output
        top, c = Counter(outs).most_common(1)[0]
        if top and c / len(views) >= LOW_DIV_SAME_OUTPUT:
            lines = [v.line for v, o in zip(views, outs, strict=True) if o == top]
            out.append(
                Finding(
                    "low_diversity",
                    f"{c / len(views):.0%} of the examples have the same answer ({_clip(top)!r}): the model will learn to say it to everything. Vary the answers.",
                    lines,
                )
            )
    inputs = norm.input
    openings = [" ".join(t.split()[:4]) for t in inputs]
    top, c = Counter(openings).most_common(1)[0]
    if top and len(top.split()) == 4 and c / len(views) >= LOW_DIV_OPENING:
        lines = [v.line for v, o in zip(views, openings, strict=True) if o == top]
        out.append(
            Finding(
                "low_diversity",
                f"{c / len(views):.0%} of the inputs start with the same words ({top!r}): real users will phrase things differently. Paraphrase the inputs.",
                lines,
            )
        )
    sample = (
        inputs if len(inputs) <= 5000 else random.Random(0).sample(inputs, 5000)
    )  # distinct-2 needs no more
    bigrams = [(a, b) for t in sample for a, b in zip(t.split(), t.split()[1:], strict=False)]
    if len(bigrams) >= 200 and len(set(bigrams)) / len(bigrams) < LOW_DIV_DISTINCT2:
        ratio = len(set(bigrams)) / len(bigrams)
        out.append(
            Finding(
                "low_diversity",
                f"The inputs reuse few word pairs (distinct-2 = {ratio:.2f}, below {LOW_DIV_DISTINCT2}): they look templated. Add differently worded examples.",
                [],
            )
        )
    return out


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
