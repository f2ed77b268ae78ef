"""Content shared by (nearly) all examples, found once and left out of the quality checks.

A fixed system prompt, fixed few-shot turns, tool schemas, or a fixed instruction before (or after) the
user's text is the same in every example. Measured as part of each example it dominates short inputs: every
pair of examples looks alike (``near_duplicate``) and every input starts alike (``low_diversity``). So the
checks judge what varies between examples, and the shared content is reported once as a stat.

Rules (thresholds below and in docs/data.md):

- An example's input is a sequence of parts (chat: tool schemas, then each message before the answer;
  other formats: the prompt or text). The last part is the *question*, the text that varies by design.
- A part before the question (a system prompt, a fixed turn, the tool schemas) whose exact text appears in
  at least ``SHARED_PART_SHARE`` of the examples is shared. A verbatim repeat of a whole message in a fifth
  of a data set is a template, not something a user wrote; the question itself is never removed whole, so
  repeated questions stay visible as duplicates and contradictions.
- A prefix or suffix of a part (the question included) is shared when it ends (prefix) or starts (suffix)
  at a line break or after ``:``, ``.``, ``?`` or ``!``, has at least ``SHARED_AFFIX_MIN_WORDS`` words, and
  at least ``SHARED_AFFIX_SHARE`` of the examples have it. The boundary keeps natural openings ("How do I")
  out: only whole sentences or lines are instructions. Candidates are counted on a seeded sample of
  ``AFFIX_SAMPLE`` examples, then stripped from every example (longest first), never leaving a part empty.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SHARED_PART_SHARE = 0.2  # a whole context part (system prompt, fixed turn, tool schemas) in >= this share
SHARED_AFFIX_SHARE = 0.5  # a prefix/suffix (instruction around the user's text) in >= this share
SHARED_AFFIX_MIN_WORDS = 3  # shorter prefixes ("Question:") cost the checks little and may be natural text
AFFIX_SAMPLE = 2_000  # examples sampled to find prefix/suffix candidates
AFFIX_MAX_CHARS = 4_000  # a prefix/suffix candidate lies within this many characters of the part's edge
AFFIX_MAX_CANDIDATES = 8  # boundaries tried per part and edge

_BOUNDARY = re.compile(r"\n\s*|[:.?!](?=\s)\s*")

Part = tuple[str, str]  # (role or field, text)


@dataclass(frozen=True)
class SharedItem:
    """One piece of shared content: a whole part, or a prefix or suffix of parts with this role."""

    role: str  # system / user / assistant / tools / prompt / text ...
    kind: str  # "message" | "prefix" | "suffix"
    text: str


@dataclass(frozen=True)
class Factored:
    """What varies: per example the varying input (parts joined by line breaks) and the varying question,
    plus which shared items each example had (``context``: one int per distinct set, so two inputs are the
    same input exactly when their context ids and varying inputs are equal), and per-item example counts."""

    items: list[SharedItem]
    counts: list[int]
    vary: list[str]
    question: list[str]
    context: list[int]


def parts_of_messages(messages: Sequence[dict[str, Any]], tools: Any = None) -> tuple[Part, ...]:
    """The input parts of a chat prompt: the tool schemas (when present), then each message's text."""
    parts: list[Part] = [("tools", json.dumps(tools, sort_keys=True, ensure_ascii=False))] if tools else []
    for m in messages:
        content = m.get("content")
        text = (
            content
            if isinstance(content, str) and content
            else json.dumps(content or m.get("tool_calls"), sort_keys=True, ensure_ascii=False)
        )
        parts.append((str(m.get("role")), text))
    return tuple(parts)


def find_shared(parts: Sequence[Sequence[Part]], seed: int = 0) -> list[SharedItem]:
    """The shared items of a data set (``parts``: each example's input parts, the question last); see the
    module docstring. Returns whole parts first, then prefixes and suffixes, each by descending count."""
    n = len(parts)
    if n < 2:
        return []
    whole: Counter[Part] = Counter()
    for p in parts:
        whole.update(set(p[:-1]))
    min_whole = max(2, SHARED_PART_SHARE * n)
    items = [SharedItem(r, "message", t) for (r, t), c in whole.most_common() if c >= min_whole]
    shared_whole = {(i.role, i.text) for i in items}
    idx = range(n) if n <= AFFIX_SAMPLE else random.Random(seed).sample(range(n), AFFIX_SAMPLE)
    affixes: Counter[tuple[str, str, str]] = Counter()
    for i in idx:
        seen: set[tuple[str, str, str]] = set()
        for role, text in parts[i]:
            if (role, text) not in shared_whole:
                seen.update(_affix_candidates(role, text))
        affixes.update(seen)
    min_affix = max(2, SHARED_AFFIX_SHARE * len(idx))
    items += [SharedItem(r, k, t) for (r, k, t), c in affixes.most_common() if c >= min_affix]
    return items


def _affix_candidates(role: str, text: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    head = list(_BOUNDARY.finditer(text, 0, min(len(text), AFFIX_MAX_CHARS)))[:AFFIX_MAX_CANDIDATES]
    for m in head:
        prefix = text[: m.end()]
        if text[m.end() :].strip() and len(prefix.split()) >= SHARED_AFFIX_MIN_WORDS:
            out.append((role, "prefix", prefix))
    tail = list(_BOUNDARY.finditer(text, max(0, len(text) - AFFIX_MAX_CHARS)))[-AFFIX_MAX_CANDIDATES:]
    for m in tail:
        suffix = text[m.end() :]
        if text[: m.end()].strip() and len(suffix.split()) >= SHARED_AFFIX_MIN_WORDS:
            out.append((role, "suffix", suffix))
    return out


def factor(parts: Sequence[Sequence[Part]], items: Sequence[SharedItem]) -> Factored:
    """Remove ``items`` (from ``find_shared`` on the training file) from each example's parts."""
    whole = {(i.role, i.text): k for k, i in enumerate(items) if i.kind == "message"}
    pre: dict[str, list[tuple[str, int]]] = {}
    suf: dict[str, list[tuple[str, int]]] = {}
    for k, i in enumerate(items):
        if i.kind != "message":
            (pre if i.kind == "prefix" else suf).setdefault(i.role, []).append((i.text, k))
    for table in (pre, suf):
        for lst in table.values():
            lst.sort(key=lambda x: -len(x[0]))  # longest first
    counts = [0] * len(items)
    vary: list[str] = []
    question: list[str] = []
    context: list[int] = []
    context_ids: dict[tuple[int, ...], int] = {}
    for p in parts:
        used: list[int] = []
        kept: list[str] = []
        for j, (role, text) in enumerate(p):
            k = whole.get((role, text)) if j < len(p) - 1 else None
            if k is not None:
                used.append(k)
                continue
            if role in pre or role in suf:
                text = _strip_affixes(text, pre.get(role, ()), suf.get(role, ()), used)
            kept.append(text)
        for k in used:
            counts[k] += 1
        vary.append(kept[0] if len(kept) == 1 else "\n".join(kept))
        question.append(kept[-1] if kept else "")
        context.append(context_ids.setdefault(tuple(sorted(used)), len(context_ids)))
    return Factored(list(items), counts, vary, question, context)


def _strip_affixes(
    text: str, prefixes: Sequence[tuple[str, int]], suffixes: Sequence[tuple[str, int]], used: list[int]
) -> str:
    for p, k in prefixes:
        if text.startswith(p) and text[len(p) :].strip():
            text = text[len(p) :]
            used.append(k)
            break
    for s, k in suffixes:
        if text.endswith(s) and text[: len(text) - len(s)].strip():
            text = text[: len(text) - len(s)]
            used.append(k)
            break
    return text


def shared_stats(f: Factored, n: int, tokenizer: Any = None, limit: int = 10) -> list[dict[str, Any]]:
    """The ``stats.shared`` entries of ``data check``: one per shared item (most common first), with the
    share of examples that have it, its length in words (and in tokens of ``tokenizer`` when given) and a
    short preview."""
    out: list[dict[str, Any]] = []
    ranked = sorted(range(len(f.items)), key=lambda k: -f.counts[k])
    for k in ranked[:limit]:
        item = f.items[k]
        if not f.counts[k]:
            continue
        entry: dict[str, Any] = {
            "role": item.role,
            "part": item.kind,
            "share": round(f.counts[k] / max(n, 1), 3),
            "words": len(item.text.split()),
        }
        if tokenizer is not None:
            entry["tokens"] = len(tokenizer(item.text, add_special_tokens=False)["input_ids"])
        preview = " ".join(item.text.split())
        entry["preview"] = preview if len(preview) <= 60 else preview[:59] + "…"
        out.append(entry)
    return out


def describe(entry: dict[str, Any]) -> str:
    """One line for the terminal: ``system message: 100% of examples, 35 words (47 tokens)``."""
    what = {"message": "message", "prefix": "prefix", "suffix": "suffix"}.get(entry["part"], entry["part"])
    name = {"tools": "tool schemas", "system": "system prompt"}.get(entry["role"], entry["role"])
    name = name if what == "message" else f"{entry['role']} {what}"
    tokens = f" ({entry['tokens']:,} tokens)" if "tokens" in entry else ""
    return f"{name}: {entry['share']:.0%} of examples, {entry['words']:,} words{tokens}, {entry['preview']!r}"
