"""Labels: matching an answer to a label set without ever merging two labels, and the closed-set rule.

Used by evaluation (every generated answer) and by ``data check`` (labels that collide when normalised).

Matching (``match``), first rule that decides wins:

1. **exact**: the answer, stripped of surrounding whitespace, is a label.
2. **normalised**: the answer equals a label after a normalisation step, and *only one* label has that
   normalised form. The steps get coarser: (a) case and whitespace folded; (b) also surrounding quotes,
   brackets and a final ``.``/``!``; (c) also every surrounding punctuation character. A step where the answer's
   form is shared by several labels (``c++`` under (c) with labels ``C``, ``C++``, ``C#``) decides nothing and
   the coarser steps are not tried: two labels are never merged.
3. **in_answer**: exactly one label is named in the answer (case folded) between whitespace or sentence
   punctuation (``+ # _`` are not edges, ``-`` only after a name: "-1" names ``-1``, not ``1``; "C+" names no
   label; "billing-related" names ``billing``), after dropping names inside a longer named label ("refund
   request" names ``refund request``, not ``refund``; "A-" names ``A-``, not ``A``).
4. **none**: no label, or several: the answer is invalid.

Closed set (``closed_label_set``): free-text answers are treated as labels when there are at least
``MIN_ROWS`` of them, each has 1 to ``MAX_WORDS`` words and ``MAX_CHARS`` characters on one line, and there are
at most ``MAX_DISTINCT`` distinct answers and at most half as many as answers (each label repeated on average).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

MatchKind = Literal["exact", "normalised", "in_answer", "none"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "normalised", "in_answer", "none")

MIN_ROWS = 10
MAX_WORDS = 3
MAX_CHARS = 64
MAX_DISTINCT = 50

_PUNCT = string.punctuation + "“”‘’«»`"
_QUOTES = "\"'`“”‘’«»()[]{}<>*"
_WS = re.compile(r"\s+")
# A label is named in an answer when it stands between whitespace or sentence punctuation: "+", "#" and "_"
# are not edges, so "C" is not named in "C+" nor "billing" in "billing_dispute"; "-" ends a name ("billing-related")
# but does not start one, so "1" is not named in "-1" (and "A" inside "A-" is dropped for the longer "A-").
_EDGES = r"\s.,;:!?\"'()\[\]{}<>*`“”‘’«»"
_EDGE_BEFORE = rf"(?:^|(?<=[{_EDGES}]))"
_EDGE_AFTER = rf"(?=$|[{_EDGES}\-])"


@dataclass(frozen=True)
class LabelMatch:
    """The label an answer names (None when invalid) and how it was matched."""

    label: str | None
    how: MatchKind


def fold(text: str) -> str:
    """Step (a): case folded, whitespace collapsed and stripped."""
    return _WS.sub(" ", str(text)).strip().casefold()


def _unquote(text: str) -> str:
    """Step (b): also surrounding quotes/brackets and a final full stop or exclamation mark."""
    t = fold(text)
    prev = None
    while t != prev:
        prev = t
        t = t.strip(_QUOTES + " ").rstrip(".!").strip()
    return t


def _strip_punct(text: str) -> str:
    """Step (c): also every surrounding punctuation character (``-1`` -> ``1``, ``C++`` -> ``c``)."""
    return fold(text).strip(_PUNCT + " ")


STEPS = (fold, _unquote, _strip_punct)


def match(answer: str, labels: Sequence[str]) -> LabelMatch:
    """How ``answer`` matches ``labels`` (see the module docstring)."""
    labels = list(dict.fromkeys(labels))
    text = str(answer).strip()
    if text in labels:
        return LabelMatch(text, "exact")
    for step in STEPS:
        key = step(text)
        hits = [lab for lab in labels if step(lab) == key]
        if len(hits) == 1 and key:
            return LabelMatch(hits[0], "normalised")
        if len(hits) > 1:
            break  # ambiguous at this step: coarser steps would merge labels
    named = _named(fold(text), labels)
    if len(named) == 1:
        return LabelMatch(named[0], "in_answer")
    return LabelMatch(None, "none")


def _named(text: str, labels: list[str]) -> list[str]:
    """Labels named in ``text`` as whole words/phrases, minus names inside a longer name at the same place."""
    spans: list[tuple[int, int, str]] = []
    for lab in labels:
        key = fold(lab)
        if not key:
            continue
        for m in re.finditer(rf"{_EDGE_BEFORE}{re.escape(key)}{_EDGE_AFTER}", text):
            spans.append((m.start(), m.end(), lab))
    kept = {
        lab
        for s, e, lab in spans
        if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)
    }
    return [lab for lab in labels if lab in kept]


def collisions(labels: Sequence[str]) -> list[list[str]]:
    """Groups of distinct labels that become equal under the coarsest normalisation step (``-1``/``1``,
    ``C``/``C++``/``C#``, ``A``/``A+``/``A-``); answers that spell them differently cannot be told apart."""
    groups: dict[str, list[str]] = {}
    for lab in dict.fromkeys(labels):
        groups.setdefault(_strip_punct(lab), []).append(lab)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def closed_label_set(answers: Sequence[str]) -> list[str] | None:
    """The sorted distinct answers when they form a closed label set (rule in the module docstring), else None."""
    outs = [str(a).strip() for a in answers]
    distinct = sorted(set(outs))
    if len(outs) < MIN_ROWS or len(distinct) > min(MAX_DISTINCT, len(outs) // 2):
        return None
    if not all(0 < len(o.split()) <= MAX_WORDS and len(o) <= MAX_CHARS and "\n" not in o for o in outs):
        return None
    return distinct


def label_collisions(views: Sequence[Any]) -> list[Any]:
    """The ``label_collision`` warning of ``data check``: labels that differ only in case or surrounding
    punctuation (``views`` are ``quality.View``; rows without a label are skipped)."""
    from tunesmith.data.quality import Finding

    present = [v.label for v in views if getattr(v, "label", None) is not None]
    groups = collisions(present)
    if not groups:
        return []
    names = "; ".join(" / ".join(g) for g in groups)
    members = {lab for g in groups for lab in g}
    return [
        Finding(
            "label_collision",
            f"{sum(len(g) for g in groups)} labels become the same once case and surrounding punctuation are "
            f"removed ({names}). Evaluation keeps them apart (exact spelling first, then case-folded; the "
            "punctuation-free form is never used for these), so an answer that drops the punctuation is "
            "counted invalid, not guessed. Train the model to write the labels exactly, or rename them so they "
            "differ in letters or digits (e.g. c_plus_plus, c_sharp; negative, positive).",
            sorted(v.line for v in views if getattr(v, "label", None) in members),
        )
    ]
