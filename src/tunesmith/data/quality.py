"""Quality warnings: duplicates, near-duplicates, contrastive pairs, contradictions, hold-out leaks, label
balance, length bias, personal data and low diversity. Each returns ``Finding`` objects with the lines
involved.

The checks judge what varies between examples: ``normalize_views`` factors out the content shared by
(nearly) all examples (a fixed system prompt, fixed turns, tool schemas, an instruction prefix or suffix;
rules in ``shared.py``), which would otherwise make every short example look like every other.
Near-identical inputs are grouped first; within a group, the same answer makes a near-duplicate and a
different answer a contrastive pair (information: those teach the model what the difference changes).

Every threshold is a named constant below and in docs/data.md.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tunesmith.data import shared as sh
from tunesmith.data.neardup import Similar, find_similar, members, normalize_many
from tunesmith.data.pii import find_pii

NEAR_DUP_JACCARD = 0.7  # word-bigram Jaccard at or above which two inputs are near-identical (one changed word in a 12-word input is ~0.7-0.8)
SAME_ANSWER_JACCARD = 0.9  # answers of near-identical inputs this close are the same answer (near_duplicate); below: contrastive
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
LEAK_MIN_WORDS = 3  # a hold-out input this long (shared content left out) seen verbatim in training is a leak
SHOW = 8  # lines quoted in a message


@dataclass(frozen=True)
class Finding:
    """A quality warning: a stable code, a message that says what to do, and the lines involved.
    ``level="info"``: worth knowing, nothing to fix (``contrastive``)."""

    code: str
    message: str
    lines: list[int]
    level: str = "warning"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "level": self.level, "message": self.message, "lines": self.lines}


@dataclass(frozen=True)
class View:
    """What the checks compare: the input, the expected output and (for labelled data) the label."""

    line: int
    input: str
    output: str
    label: str | None = None
    rejected: str | None = None  # preference pairs
    parts: tuple[sh.Part, ...] = ()  # the input as (role, text) parts, the question last (shared.py)


@dataclass(frozen=True)
class Normalized:
    """What the checks compare, computed once per check: the input without the content shared by (nearly)
    all examples (``shared.py``), normalised (``normalize_text``), with the answers."""

    vary: list[str]  # the varying input: near-duplicates, leaks, lengths
    question: list[str]  # its last part (the user's text): openings and distinct-2
    context: list[int]  # which shared content the example had: (context, vary) equal = the same input
    output: list[str]
    answer: list[str]  # output + rejected: answers compared within near-identical inputs
    full: list[str]  # vary + output + rejected: exact duplicates
    factored: sh.Factored
    raw_vary: list[str]  # the varying input before normalisation (PII)


def normalize_views(views: Sequence[View], shared: Sequence[sh.SharedItem] | None = None) -> Normalized:
    """Factor out the shared content (found in ``views``; for hold-out views, ``shared`` from the training
    file plus the hold-out's own, so a hold-out written with another system prompt is still compared on
    its questions) and normalise the rest."""
    parts = [v.parts or (("input", v.input),) for v in views]
    items = sh.find_shared(parts)
    if shared is not None:
        items = [*shared, *(i for i in items if i not in set(shared))]
    f = sh.factor(parts, items)
    vary = normalize_many(f.vary)
    differ = [i for i, (a, b) in enumerate(zip(f.vary, f.question, strict=True)) if a is not b and a != b]
    question = list(vary)
    for i, q in zip(differ, normalize_many([f.question[i] for i in differ]), strict=True):
        question[i] = q
    outs = normalize_many([v.output for v in views])
    rej = (
        normalize_many([v.rejected or "" for v in views])
        if any(v.rejected for v in views)
        else [""] * len(views)
    )
    answer = [f"{o} {r}" if r else o for o, r in zip(outs, rej, strict=True)]
    full = [" ".join(x for x in parts if x) for parts in zip(vary, outs, rej, strict=True)]
    return Normalized(vary, question, f.context, outs, answer, full, f, f.vary)


def view_of(line: int, record: dict[str, Any], task: str) -> View:
    if task == "chat":
        msgs = record["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        inp = "\n".join(f"{m['role']}: {m['content']}" for m in msgs[:last])
        answer = msgs[last]["content"] or json.dumps(msgs[last].get("tool_calls"), sort_keys=True)
        return View(line, inp, answer, parts=sh.parts_of_messages(msgs[:last], record.get("tools")))
    if task == "completion":
        return View(line, record["prompt"], record["completion"], parts=(("prompt", record["prompt"]),))
    if task == "classification":
        return View(line, record["text"], record["label"], record["label"], parts=(("text", record["text"]),))
    if task == "extraction":
        fields = json.dumps(record["fields"], sort_keys=True, ensure_ascii=False)
        return View(line, record["text"], fields, parts=(("text", record["text"]),))
    if task == "preference":
        inp = "\n".join(f"{m['role']}: {m['content']}" for m in record["prompt"])
        parts = sh.parts_of_messages(record["prompt"])
        return View(line, inp, record["chosen"][0]["content"], None, record["rejected"][0]["content"], parts)
    return View(line, record["text"], "", parts=(("text", record["text"]),))


def infer_labels(views: list[View]) -> list[View]:
    """Chat data whose answers are a few short strings (a converted classification set) gets labels."""
    if not views or any(v.label is not None for v in views) or views[0].rejected is not None:
        return views
    outputs = [v.output.strip() for v in views]
    distinct = set(outputs)
    short = all(0 < len(o.split()) <= LABEL_MAX_WORDS for o in outputs)
    if len(views) >= 10 and short and len(distinct) <= min(LABEL_MAX_DISTINCT, len(views) // 2):
        return [replace(v, label=o) for v, o in zip(views, outputs, strict=True)]
    return views


# --------------------------------------------------------------------------- duplicates


def duplicates(
    views: Sequence[View], holdout: Sequence[View] = (), norm: Normalized | None = None
) -> list[Finding]:
    """duplicate, near_duplicate, contrastive, contradiction and holdout_leak in one near-duplicate pass
    over the varying input (the content shared by all examples left out: ``shared.py``)."""
    n = len(views)
    if not views:
        return []
    norm = norm or normalize_views(views)
    hnorm = normalize_views(holdout, norm.factored.items) if holdout else None
    sim = similar(norm, hnorm)
    out: list[Finding] = []
    exact_sets = [g for g in ([i for i in g if i < n] for g in members(sim.exact)) if len(g) > 1]
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
    for g in members(sim.examples):
        tr = [i for i in g if i < n]
        if len(tr) > 1 and len({int(sim.exact[i]) for i in tr}) > 1:
            near_sets.append(tr)
    if near_sets:
        lines = sorted(views[i].line for g in near_sets for i in g)
        pairs = "; ".join("lines " + ", ".join(str(views[i].line) for i in g[:4]) for g in near_sets[:SHOW])
        out.append(
            Finding(
                "near_duplicate",
                f"{len(near_sets)} group(s) of near-identical examples (inputs with word overlap >= {NEAR_DUP_JACCARD:.0%} once the content shared by all examples is left out, and the same answer): {pairs}. Keep the best version of each, or vary them.",
                lines,
            )
        )
    out += _contrastive(views, norm, sim)
    out += _contradictions(views, norm)
    if holdout and hnorm is not None:
        out += _leaks(views, holdout, sim, norm, hnorm)
    return out


def similar(norm: Normalized, hnorm: Normalized | None = None) -> Similar:
    """Near-identical inputs, near-identical examples and exact copies over training (+ hold-out) views:
    indices ``>= len(norm.vary)`` are hold-out views."""
    h = hnorm or Normalized([], [], [], [], [], [], sh.factor([], []), [])
    return find_similar(
        norm.vary + h.vary, norm.answer + h.answer, norm.full + h.full, NEAR_DUP_JACCARD, SAME_ANSWER_JACCARD
    )


def _contrastive(views: Sequence[View], norm: Normalized, sim: Similar) -> list[Finding]:
    """Near-identical inputs with different answers: the examples that show what a small change in the
    input changes in the answer. Inputs that are exactly the same are contradictions instead."""
    n = len(views)
    groups = []
    for g in members(sim.inputs):
        tr = [i for i in g if i < n]
        answers, inputs = {int(sim.examples[i]) for i in tr}, {(norm.context[i], norm.vary[i]) for i in tr}
        if len(answers) > 1 and len(inputs) > 1:
            groups.append(tr)
    if not groups:
        return []
    lines = sorted(views[i].line for g in groups for i in g)
    shown = "; ".join("lines " + ", ".join(str(views[i].line) for i in g[:4]) for g in groups[:SHOW])
    return [
        Finding(
            "contrastive",
            f"{len(groups)} group(s) of near-identical inputs with different answers ({shown}): contrastive examples, which teach the model what the small difference changes. Keep them; check that each answer is the intended one.",
            lines,
            level="info",
        )
    ]


def _contradictions(views: Sequence[View], norm: Normalized) -> list[Finding]:
    outs = norm.output
    by_input: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, (c, k) in enumerate(zip(norm.context, norm.vary, strict=True)):
        if k:
            by_input[(c, k)].append(i)
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
    views: Sequence[View], holdout: Sequence[View], sim: Similar, norm: Normalized, hnorm: Normalized
) -> list[Finding]:
    n = len(views)
    pairs: list[tuple[int, int]] = []
    for g in members(sim.examples):
        tr = [i for i in g if i < n]
        ho = [i - n for i in g if i >= n]
        if tr and ho:
            pairs += [(views[t].line, holdout[h].line) for t in tr for h in ho[:1]]
    train_inputs = {k: views[i].line for i, k in enumerate(norm.vary) if len(k.split()) >= LEAK_MIN_WORDS}
    for j, k in enumerate(hnorm.vary):
        if k in train_inputs:
            pairs.append((train_inputs[k], holdout[j].line))
    if not pairs:
        return []
    pairs = sorted(set(pairs))
    shown = ", ".join(f"train {a} ~ hold-out {b}" for a, b in pairs[:SHOW])
    return [
        Finding(
            "holdout_leak",
            f"{len(pairs)} hold-out example(s) are exact or near copies of training examples, or share their input ({shown}); the content shared by all examples is left out of the comparison. Hold-out scores would be inflated; remove them from one side or re-split with `tunesmith data split`. Lines are training-file lines.",
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


def length_bias(views: Sequence[View], norm: Normalized | None = None) -> list[Finding]:
    """length_imbalance: input length (of the varying input: a shared system prompt would hide a 10x
    difference) predicts the label; preferred answers always longer; a heavy tail of answer lengths."""
    out: list[Finding] = []
    labelled = [i for i, v in enumerate(views) if v.label is not None]
    if labelled:
        vary = (norm or normalize_views(views)).vary
        by_label: dict[str, list[int]] = defaultdict(list)
        for i in labelled:
            by_label[views[i].label].append(vary[i].count(" ") + 1 if vary[i] else 0)  # type: ignore[index]
        med = {k: statistics.median(x) for k, x in by_label.items() if len(x) >= RARE_LABEL_MIN}
        if len(med) >= 2:
            hi, lo = max(med, key=med.get), min(med, key=med.get)
            if med[hi] >= LENGTH_RATIO * max(med[lo], 1):
                lines = [views[i].line for i in labelled if views[i].label == hi]
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


def pii(views: Sequence[View], norm: Normalized | None = None) -> list[Finding]:
    """Personal data: each example's varying input and answers, and the shared content once (a support
    number in a fixed system prompt is one finding, not one per example)."""
    norm = norm or normalize_views(views)
    kinds: Counter[str] = Counter()
    lines: list[int] = []
    example = ""
    for v, raw in zip(views, norm.raw_vary, strict=True):
        hits = find_pii(f"{raw}\n{v.output}\n{v.rejected or ''}")
        if hits:
            lines.append(v.line)
            kinds.update(h.kind for h in hits)
            if not example:
                example = f"line {v.line}: {hits[0].kind} {_mask(hits[0].text)}"
    shared_hits = [
        (item, h)
        for item, c in zip(norm.factored.items, norm.factored.counts, strict=True)
        if c
        for h in find_pii(item.text)
    ]
    for item, h in shared_hits:
        kinds[h.kind] += 1
        example = example or f"the shared {item.role} {item.kind}: {h.kind} {_mask(h.text)}"
    if not lines and not shared_hits:
        return []
    names = {
        "email": "e-mail address(es)",
        "phone": "phone number(s)",
        "card": "card number(s) (Luhn-valid)",
        "iban": "IBAN(s) (checksum-valid)",
    }
    desc = ", ".join(f"{c} {names[k]}" for k, c in kinds.most_common())
    where = f"{len(lines)} example(s)"
    if shared_hits:
        where += f" and in the content shared by the examples ({len(shared_hits)} found once there)"
    return [
        Finding(
            "pii",
            f"Personal data in {where}: {desc}; e.g. {example}. A fine-tuned model can repeat what it was trained on: remove or pseudonymise it.",
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
    inputs = norm.question  # the user's text without a shared instruction prefix: what real users vary
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
