"""Graders over a predictions file, and a grader's grades summed up (mean, pass rate) for a report.

Predictions files (JSON Lines), either shape:
- ``tunesmith eval``'s ``predictions.jsonl``: ``index``, ``input``, ``reference``, then one answer per
  candidate (``base:zero-shot``, ``finetuned``, ...): each candidate is graded, the item being
  ``{"input", "reference"}``;
- one answer per row: ``output_text`` (or ``sample``: a string or ``{"output_text": ...}``), and the item
  as ``item`` (an object) or as the row's other fields. Graded as one candidate, ``predictions``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.base import Grade

EVAL_KEYS = ("index", "input", "reference", "match")


@dataclass(frozen=True)
class Predictions:
    """Answers by candidate, and the items they answer (same order)."""

    items: list[dict[str, Any]]
    answers: dict[str, list[Any]]


def read_predictions(path: Path) -> Predictions:
    """The answers and items in ``path`` (either shape in the module docstring).

    Raises:
        TunesmithError: when the file is missing, a line is not a JSON object (naming the line), a row has no
            answer, or the rows mix shapes.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TunesmithError(f"{path} does not exist.", "Pass a predictions JSONL file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunesmithError(f"Cannot read {path}: {exc}.") from None
    rows = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TunesmithError(
                f"{path}:{no}: not valid JSON ({exc.msg}).", "One JSON object per line."
            ) from None
        if not isinstance(row, dict):
            raise TunesmithError(f"{path}:{no}: a row is a JSON object, got {type(row).__name__}.")
        rows.append((no, row))
    if not rows:
        raise TunesmithError(f"{path} holds no predictions.", "Pass a non-empty predictions JSONL file.")
    if all(all(k in r for k in EVAL_KEYS[:3]) for _, r in rows):
        names = [k for k, v in rows[0][1].items() if k not in EVAL_KEYS and isinstance(v, str)]
        if not names:
            raise TunesmithError(f"{path}: no candidate answers (columns besides {', '.join(EVAL_KEYS)}).")
        items = [{"input": r["input"], "reference": r["reference"]} for _, r in rows]
        return Predictions(items, {n: [str(r.get(n, "")) for _, r in rows] for n in names})
    items, answers = [], []
    for no, row in rows:
        sample = row.get("sample", row.get("output_text"))
        if sample is None:
            raise TunesmithError(
                f"{path}:{no}: no answer (output_text or sample).",
                'Write rows like {"output_text": "...", "reference": "..."}, or pass eval\'s predictions.jsonl.',
            )
        item = (
            row["item"]
            if isinstance(row.get("item"), dict)
            else {k: v for k, v in row.items() if k not in ("sample", "output_text")}
        )
        items.append(item)
        answers.append(sample)
    return Predictions(items, {"predictions": answers})


def summarize(grades: Sequence[Grade]) -> dict[str, Any]:
    """``{"mean", "pass_rate", "n", "unparsed"}`` of ``grades`` (``unparsed``: judge replies without a score)."""
    scores = [g.score for g in grades]
    n = len(scores)
    return {
        "mean": sum(scores) / n if n else math.nan,
        "pass_rate": sum(g.passed for g in grades) / n if n else math.nan,
        "n": n,
        "unparsed": sum(1 for g in grades if g.note),
    }
