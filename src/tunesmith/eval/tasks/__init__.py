"""Evaluation tasks as objects: one file per task, each owning its prompts, references, generation budget,
scoring and headline metrics (``base.EvalTask``). ``task_for`` picks the task for a hold-out.

Adding a task is one new file here (a class following ``EvalTask``) and one ``case`` in ``task_for``.

Example::

    from tunesmith.eval.tasks import task_for

    task = task_for("chat", holdout_rows, train_rows)   # an intent set in chat form -> AnswerLabelsTask
    task.applied.reason                                  # why classification metrics apply
    task.score(holdout_rows, answers, cfg.eval).metrics["accuracy"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.eval.tasks.base import EvalTask, Scored, TextTask
from tunesmith.eval.tasks.chat import JsonAnswersTask, answers_task
from tunesmith.eval.tasks.classification import AnswerLabelsTask, ClassificationTask
from tunesmith.eval.tasks.extraction import ExtractionTask
from tunesmith.eval.tasks.preference import PreferenceTask
from tunesmith.eval.tasks.toolcalls import ToolCallTask, has_tool_calls


def task_for(
    name: str, rows: Sequence[dict[str, Any]] = (), pool: Sequence[dict[str, Any]] = ()
) -> EvalTask | PreferenceTask:
    """The task object for data of task ``name`` (``rows`` the hold-out, ``pool`` the few-shot examples).

    Raises:
        TunesmithError: for raw text (nothing to compare with) or an unknown task.
    """
    match name:
        case "classification":
            return ClassificationTask(labels=sorted({str(r["label"]) for r in [*rows, *pool]}))
        case "extraction":
            return ExtractionTask()
        case "chat" | "completion":
            if name == "chat" and has_tool_calls(rows):
                return ToolCallTask()
            return answers_task(name, rows, pool) if rows else TextTask(name=name)
        case "preference":
            return PreferenceTask()
        case "text":
            raise TunesmithError(
                "Raw text has no reference answer to evaluate against.",
                "Evaluate on chat, completion, classification or extraction data.",
            )
    raise TunesmithError(
        f"Unknown task {name!r}.", "Use chat, completion, classification, extraction or preference."
    )


__all__ = [
    "AnswerLabelsTask",
    "ClassificationTask",
    "EvalTask",
    "ExtractionTask",
    "JsonAnswersTask",
    "PreferenceTask",
    "Scored",
    "TextTask",
    "ToolCallTask",
    "task_for",
]
