"""Fine-tune on a remote OpenAI-compatible API, then evaluate the result on the hold-out.

train  -> tunesmith.train.remote.train_remote (validate locally, upload, create the job, follow it)
eval   -> tunesmith.eval.remote.evaluate_remote (when data.holdout is set and the data is not preference
          pairs: tunesmith eval's prompts and metrics, answered by the fine-tuned remote model)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.eval.remote import evaluate_remote
from tunesmith.train.remote import RemoteResult, train_remote


def run(
    cfg: ProjectConfig,
    client: Any,
    *,
    on_event: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float = 24 * 3600,
    out: Path | None = None,
) -> RemoteResult:
    """Train ``cfg`` on the API behind ``client`` (an ``openai.OpenAI``) and evaluate the fine-tuned model.

    ``out``: folder for the evaluation's ``report.json`` and ``predictions.jsonl`` (nothing written when None).
    The result's ``report`` is None when there is no hold-out or the data are preference pairs.

    Raises:
        TunesmithError: when the data fail tunesmith's checks, the API refuses the file or the job, the job
        fails, or it does not finish within ``timeout_s``.
    """
    result = train_remote(cfg, client, on_event=on_event, poll_s=poll_s, timeout_s=timeout_s)
    if cfg.data.holdout is None or result.task == "preference":
        return result
    report = evaluate_remote(cfg, client, result.fine_tuned_model, result.system_prompt, out)
    return dataclasses.replace(result, report=report)
