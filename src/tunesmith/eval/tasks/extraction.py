"""Extraction: ``{"text", "fields"}`` rows; the answer is one JSON object compared field by field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.eval import metrics as M
from tunesmith.eval.tasks.base import Scored, TextTask
from tunesmith.results.eval import Applied

HEADLINE = ("exact_match", "field_f1", "valid_json_rate", "consistency")
HOW = "JSON object parsed from the greedy answer; fields compared after normalising (numbers numerically)"


@dataclass(frozen=True)
class ExtractionTask(TextTask):
    """``{"text", "fields"}`` rows: valid-JSON rate, exact match, per-field precision/recall/F1."""

    name: str = "extraction"
    headline: tuple[str, ...] = HEADLINE
    applied: Applied = field(
        default_factory=lambda: Applied(
            families=["extraction"],
            reason="rows with a fields object: valid JSON, exact match, per-field precision/recall/F1",
        )
    )
    free_text: bool = False

    def with_input(self, record: dict[str, Any], text: str) -> dict[str, Any]:
        return {**record, "text": text}

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        return Scored(M.extraction_metrics([self.fields(r) for r in rows], answers), HOW)

    def fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """The gold JSON object of a row."""
        return record["fields"]

    def correct(self, record: dict[str, Any], answer: str) -> bool:
        return M.extraction_metrics([self.fields(record)], [answer])["exact_match"] == 1.0


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed as one JSON object (the whole text, strictly), else None."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return None
    return value if isinstance(value, dict) else None
