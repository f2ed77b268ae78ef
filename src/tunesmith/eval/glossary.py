"""What the report's metric and candidate names mean, in words (issue 17: the report speaks to the user).

One entry per metric path a report shows: a short name, a one-line meaning, whether higher or lower is
better, and whether the number is a share of the examples (so that ``0.9875`` of 80 reads "79 of 80").
Readers: the verdict (``eval/verdict.py``), the gate's plain-words lines (``eval/gate.py``), report.html
(glossary, the split of higher- and lower-is-better charts) and the CLI. A metric without an entry is shown
under its own name, higher-is-better unless its name says latency, cost, loss, error or invalid: a task or
grader that adds metrics adds their entries here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    """A metric in words. ``share``: the value is the fraction of examples (or pairs) that passed."""

    name: str
    meaning: str
    better: Literal["higher", "lower"] = "higher"
    share: bool = False

    @property
    def lower_is_better(self) -> bool:
        return self.better == "lower"


_I = MetricInfo
METRICS: dict[str, MetricInfo] = {
    "accuracy": _I("accuracy", "share of examples whose generated answer is the right label", share=True),
    "macro_f1": _I(
        "macro-F1",
        "F1 (balance of precision and recall) of each label, averaged so rare labels count as much as common ones",
    ),
    "label_scoring.accuracy": _I(
        "accuracy by label likelihood",
        "share right when the model's most likely label (scored as the whole answer) is taken; cannot be invalid",
        share=True,
    ),
    "invalid_rate": _I("invalid answers", "share of answers that name no label", "lower", share=True),
    "consistency": _I(
        "consistency", "share of lightly reworded inputs answered the same as the original", share=True
    ),
    "exact_match": _I(
        "exact match",
        "share of answers equal to the reference (JSON: every field right, none extra)",
        share=True,
    ),
    "field_f1": _I("field F1", "F1 over the fields of the JSON answers (a field is right when its value is)"),
    "valid_json_rate": _I("valid JSON", "share of answers that hold a JSON object", share=True),
    "token_f1": _I("token F1", "word overlap with the reference answer (SQuAD-style F1), mean over examples"),
    "rouge_l": _I("ROUGE-L", "longest run of words shared with the reference, as an F-measure, mean"),
    "format_pass_rate": _I(
        "format pass rate", "share of answers that meet the format rules (eval.format_*)", share=True
    ),
    "reward_score": _I("reward score", "mean score the reward model (--reward) gives the answers"),
    "preference_accuracy": _I(
        "preference accuracy",
        "share of pairs where the model finds the chosen answer more likely than the rejected one",
        share=True,
    ),
    "reward_margin": _I("reward margin", "mean implied reward of the chosen answer minus the rejected one"),
    "logp_margin": _I("log-prob margin", "mean log-probability of the chosen answer minus the rejected one"),
    "generated_reward": _I("generated reward", "mean reward model score of the model's own answers"),
    "latency_ms.p50": _I("latency p50", "median wall time of a request's batch, ms", "lower"),
    "latency_ms.p95": _I("latency p95", "95th-percentile wall time of a request's batch, ms", "lower"),
    "tokens_per_s": _I("tokens/s", "answer tokens generated per second"),
    "cost_per_1k_requests_usd": _I(
        "$ per 1k requests", "machine time (or token price) of 1,000 requests like these", "lower"
    ),
}
_LOWER_WORDS = ("latency", "cost", "loss", "error", "invalid", "_ms")

CANDIDATES = {
    "finetuned": "the fine-tuned model",
    "base": "the base model",
    "base:zero-shot": "the zero-shot prompt",
    "base:few-shot": "the few-shot prompt",
    "base:rag": "the prompt with retrieval (RAG)",
}


def metric_info(path: str) -> MetricInfo:
    """The entry for metric ``path`` (``accuracy``, ``label_scoring.accuracy``, ``latency_ms.p95``); an
    unknown path gets its own name and a direction guessed from it (see the module docstring)."""
    if path in METRICS:
        return METRICS[path]
    lower = any(w in path for w in _LOWER_WORDS)
    return MetricInfo(path, "", "lower" if lower else "higher")


def candidate_words(name: str) -> str:
    """``base:few-shot`` -> ``the few-shot prompt``; an unknown name is returned as it is."""
    return CANDIDATES.get(name, name)


def prompt_name(name: str) -> str:
    """A prompted baseline's short name (``base:few-shot`` -> ``few-shot``)."""
    return name.split(":", 1)[1] if name.startswith("base:") else name
