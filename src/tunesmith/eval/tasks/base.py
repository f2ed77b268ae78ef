"""What every evaluation task provides (``EvalTask``) and the shared part of the supervised ones (``TextTask``).

A task object owns, for one kind of data: how a record becomes the prompt and the reference answer, which
text a user wrote (for few-shot similarity and rewording), the generation budget, how answers are scored
(metrics and the sentence saying how), the consistency key of an answer, whether an answer is right, and
which metrics head the report. ``eval/run.py`` calls these and never branches on the task's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunesmith.config import EvalConfig
from tunesmith.data.formats import default_system_prompt, to_chat
from tunesmith.data.labels import LabelMatch
from tunesmith.errors import TunesmithError
from tunesmith.eval import metrics as M
from tunesmith.results.eval import Applied

TEXT_HEADLINE = ("token_f1", "rouge_l", "exact_match", "format_pass_rate", "reward_score", "consistency")


@dataclass(frozen=True)
class Scored:
    """A candidate's metrics on its answers, how they were computed, and (label tasks) how each matched."""

    metrics: dict[str, Any]
    how: str
    matches: list[LabelMatch] | None = None


class EvalTask(Protocol):
    """The protocol ``eval/run.py`` relies on (see the module docstring)."""

    name: str  # the data's task: classification, extraction, chat, completion
    labels: list[str]  # the label set scored by log-likelihood; empty: no label scoring
    headline: tuple[str, ...]  # metric paths the report and `compare` show first
    applied: Applied  # which metric families apply, and why
    free_text: bool  # answers are free text (a reward model can score them)

    def system_prompt(self, rows: Sequence[dict[str, Any]]) -> str | None: ...
    def query(self, record: dict[str, Any], system: str | None) -> list[dict[str, Any]]: ...
    def reference(self, record: dict[str, Any]) -> str: ...
    def answer_message(self, record: dict[str, Any]) -> dict[str, Any]: ...
    def input_text(self, record: dict[str, Any]) -> str: ...
    def with_input(self, record: dict[str, Any], text: str) -> dict[str, Any]: ...
    def max_tokens(self, tokenizer: Any, budget: int) -> int: ...
    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored: ...
    def golds(self, rows: Sequence[dict[str, Any]]) -> list[str]: ...
    def answer_key(self, answer: str) -> str: ...
    def correct(self, record: dict[str, Any], answer: str) -> bool: ...


@dataclass(frozen=True)
class TextTask:
    """Free-text answers (chat, completion): token-F1, ROUGE-L, exact match, format rules. The base of the
    other supervised tasks, which override what differs."""

    name: str = "chat"
    labels: list[str] = field(default_factory=list)
    headline: tuple[str, ...] = TEXT_HEADLINE
    applied: Applied = field(
        default_factory=lambda: Applied(
            families=["text"], reason="free-text reference answers: text overlap metrics"
        )
    )
    free_text: bool = True

    def system_prompt(self, rows: Sequence[dict[str, Any]]) -> str | None:
        """The generated system prompt for this data (None: the data brings its own)."""
        return default_system_prompt(list(rows), self.name)  # type: ignore[arg-type]

    def query(self, record: dict[str, Any], system: str | None) -> list[dict[str, Any]]:
        """The conversation up to (not including) the reference answer."""
        msgs = to_chat(record, self.name, system)  # type: ignore[arg-type]
        if msgs[-1]["role"] != "assistant":
            raise TunesmithError(
                "A hold-out example has no reference answer to compare with.",
                "End each example with the assistant's answer.",
            )
        return msgs[:-1]

    def reference(self, record: dict[str, Any]) -> str:
        """The reference answer as text."""
        return str(to_chat(record, self.name)[-1]["content"])  # type: ignore[arg-type]

    def answer_message(self, record: dict[str, Any]) -> dict[str, Any]:
        """The reference answer as an assistant message (a few-shot example's answer turn)."""
        return {"role": "assistant", "content": self.reference(record)}

    def input_text(self, record: dict[str, Any]) -> str:
        """The text a user wrote (last user turn)."""
        msgs = self.query(record, None)
        users = [m for m in msgs if m["role"] == "user"]
        return str((users or msgs)[-1]["content"])

    def with_input(self, record: dict[str, Any], text: str) -> dict[str, Any]:
        """A copy of ``record`` whose user text (last user turn) is ``text``."""
        if self.name == "completion":
            return {**record, "prompt": text}
        msgs = [dict(m) for m in record["messages"]]
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs[last_user]["content"] = text
        return {**record, "messages": msgs}

    def max_tokens(self, tokenizer: Any, budget: int) -> int:
        """The generation budget per answer: the configured one."""
        return budget

    def score(self, rows: Sequence[dict[str, Any]], answers: Sequence[str], s: EvalConfig) -> Scored:
        """Metrics of ``answers`` against ``rows`` (same order)."""
        rules = {"regex": s.format_regex, "schema": s.json_schema, "max_chars": s.max_answer_chars}
        refs = [self.reference(r) for r in rows]
        how = "greedy answer vs reference: word-token F1 and ROUGE-L after normalising case, whitespace and punctuation"
        return Scored(M.generation_metrics(refs, answers, **rules), how)

    def golds(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """The right answer of every row (the label, for label tasks)."""
        return [self.reference(r) for r in rows]

    def answer_key(self, answer: str) -> str:
        """What two answers must share to count as the same answer (consistency, disagreements)."""
        return M.normalize(answer)

    def correct(self, record: dict[str, Any], answer: str) -> bool:
        """Whether ``answer`` is right for ``record`` (the report's examples)."""
        return M.normalize(answer) == M.normalize(self.reference(record))
