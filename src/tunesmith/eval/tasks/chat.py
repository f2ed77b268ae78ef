"""Chat and completion rows: the metrics are chosen from what the reference answers are.

``answers_task`` looks at every reference answer of the hold-out and the few-shot pool:

- **a closed label set** (``tunesmith.data.labels.closed_label_set``: at least 10 answers, each 1 to 3 words
  and at most 64 characters on one line, at most 50 distinct and at most half as many distinct as answers):
  classification metrics, label log-likelihood scoring and the short generation budget (the text metrics stay)
  (``AnswerLabelsTask``); an intent set written as OpenAI chat rows is scored like the classification set
  it is.
- **JSON objects** (every reference parses, as a whole, as a JSON object): the extraction metrics (valid
  JSON, exact match, per-field precision/recall/F1) in addition to the text metrics (``JsonAnswersTask``);
  the text exact match is then ``text_exact_match``, ``exact_match`` is the extraction one.
- otherwise free text: token-F1, ROUGE-L, exact match (``TextTask``).

The report's ``applied`` says which was chosen and the numbers that decided it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.data import labels as L
from tunesmith.eval import metrics as M
from tunesmith.eval.tasks.base import TEXT_HEADLINE, Scored, TextTask
from tunesmith.eval.tasks.classification import AnswerLabelsTask
from tunesmith.eval.tasks.extraction import HOW, json_object
from tunesmith.results.eval import Applied

JSON_HEADLINE = ("exact_match", "field_f1", "valid_json_rate", "token_f1", "rouge_l", "consistency")


@dataclass(frozen=True)
class JsonAnswersTask(TextTask):
    """Chat/completion rows whose reference answers are JSON objects: extraction plus text metrics."""

    headline: tuple[str, ...] = JSON_HEADLINE
    free_text: bool = True

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        text = super().score(rows, answers, s)
        golds = [json_object(self.reference(r).strip()) or {} for r in rows]
        metrics = {k: v for k, v in text.metrics.items() if k != "exact_match"}
        metrics["text_exact_match"] = text.metrics["exact_match"]
        metrics.update(M.extraction_metrics(golds, answers))
        return Scored(metrics, f"{HOW}; token_f1, rouge_l, text_exact_match: {text.how}")

    def correct(self, record: dict[str, Any], answer: str) -> bool:
        gold = json_object(self.reference(record).strip()) or {}
        return M.extraction_metrics([gold], [answer])["exact_match"] == 1.0


def answers_task(name: str, rows: Sequence[dict[str, Any]], pool: Sequence[dict[str, Any]]) -> TextTask:
    """The task for chat/completion data, chosen from its reference answers (see the module docstring)."""
    probe = TextTask(name=name)
    refs = [probe.reference(r).strip() for r in [*rows, *pool]]
    counts = Counter(refs)
    labels = L.closed_label_set(refs)
    # the count covers the few-shot pool too: say so, or "348 reference answers" reads wrong beside 70 examples
    where = f" ({len(rows)} hold-out + {len(pool)} training)" if pool else ""
    if labels is not None:
        top = ", ".join(f"{a!r} x{c}" for a, c in counts.most_common(3))
        reason = (
            f"the {len(refs)} reference answers{where} come from a closed set of {len(labels)} (rule: >= {L.MIN_ROWS} "
            f"answers, each <= {L.MAX_WORDS} words and {L.MAX_CHARS} characters, <= {L.MAX_DISTINCT} distinct "
            f"and <= half as many distinct as answers; most common {top}): scored as classification, with "
            "label log-likelihood scoring and the short generation budget (text metrics kept alongside)"
        )
        return AnswerLabelsTask(
            name=name,
            labels=labels,
            applied=Applied(families=["classification", "label_scoring", "text"], reason=reason),
        )
    if refs and all(json_object(r) is not None for r in refs):
        reason = (
            f"all {len(refs)} reference answers{where} parse as JSON objects: extraction metrics (valid JSON, exact "
            "match, per-field precision/recall/F1) in addition to the text metrics"
        )
        return JsonAnswersTask(name=name, applied=Applied(families=["extraction", "text"], reason=reason))
    distinct = len(counts)
    reason = (
        f"free-text reference answers ({distinct} distinct of {len(refs)}; not a closed label set, not all "
        "JSON objects): text overlap metrics"
    )
    return TextTask(name=name, headline=TEXT_HEADLINE, applied=Applied(families=["text"], reason=reason))


__all__ = ["JsonAnswersTask", "answers_task"]
