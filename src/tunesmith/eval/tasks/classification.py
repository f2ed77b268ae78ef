"""Classification: ``{"text", "label"}`` rows, and chat rows whose answers come from a closed label set.

Answers are matched to the label set by ``tunesmith.data.labels.match`` (exact first, a normalised match only
where one label has that form, then the one label named in the answer); every answer records how it matched.
The generation budget is the longest label plus 16 tokens (a label in a short sentence; more only costs
time), and the label set is also scored by log-likelihood (``label_scoring.*`` in the report, which cannot
produce an invalid answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.data.labels import match
from tunesmith.eval import metrics as M
from tunesmith.eval.tasks.base import Scored, TextTask
from tunesmith.results.eval import Applied

HEADLINE = ("accuracy", "macro_f1", "label_scoring.accuracy", "invalid_rate", "consistency")
LABEL_SLACK_TOKENS = 16


@dataclass(frozen=True)
class ClassificationTask(TextTask):
    """``{"text", "label"}`` rows; ``labels`` is the label set (hold-out and training pool)."""

    name: str = "classification"
    headline: tuple[str, ...] = HEADLINE
    applied: Applied = field(
        default_factory=lambda: Applied(
            families=["classification", "label_scoring"],
            reason="labelled rows: accuracy, macro-F1, per-label scores and label log-likelihood scoring",
        )
    )
    free_text: bool = False

    def with_input(self, record: dict[str, Any], text: str) -> dict[str, Any]:
        return {**record, "text": text}

    def golds(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        return [str(r["label"]) for r in rows]

    def max_tokens(self, tokenizer: Any, budget: int) -> int:
        """The longest label plus ``LABEL_SLACK_TOKENS``, capped by the configured budget."""
        longest = max(
            (len(tokenizer(lab, add_special_tokens=False)["input_ids"]) for lab in self.labels), default=0
        )
        return min(budget, longest + LABEL_SLACK_TOKENS)

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        matches = M.match_labels(answers, self.labels)
        metrics = M.classification_metrics(self.golds(rows), [m.label for m in matches], self.labels)
        counts = M.match_counts(matches)
        how = (
            "accuracy etc.: greedy answer matched to a label: the exact label, else a case/punctuation-normalised "
            "match only where one label has that form (labels are never merged), else the one label named in "
            "the answer; matched " + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
        return Scored(metrics, how, matches)

    def answer_key(self, answer: str) -> str:
        label = match(answer, self.labels).label
        return label if label is not None else M.normalize(answer)

    def correct(self, record: dict[str, Any], answer: str) -> bool:
        return match(answer, self.labels).label == self.golds([record])[0]


@dataclass(frozen=True)
class AnswerLabelsTask(ClassificationTask):
    """Chat (or completion) rows whose reference answers form a closed label set: the label of a row is its
    reference answer (stripped), scored as classification."""

    name: str = "chat"
    with_input = TextTask.with_input

    def golds(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        return [self.reference(r).strip() for r in rows]

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        """Classification metrics plus the text metrics (so text gate rules on chat data keep working)."""
        labelled = super().score(rows, answers, s)
        text = TextTask.score(self, rows, answers, s)
        return Scored({**text.metrics, **labelled.metrics}, f"{labelled.how}; {text.how}", labelled.matches)
