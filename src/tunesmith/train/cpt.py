"""Continued pre-training ("don't stop pre-training"): next-token loss on every token of domain text.

Same flow as sft (train/sft.py); what differs lives in the data step (train/data.py): raw text is cut
into ``data.max_seq_len`` windows with EOS closing each document (nothing truncated away), and any chat
or table data is rendered with the chat template and trained on all tokens. Packing then fills
micro-batches with those windows without attention across documents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.train import sft
from tunesmith.train.runs import RunResult


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Continue pre-training the base on ``cfg.data.train`` (text, or any supervised data on all tokens)."""
    if cfg.train.method != "cpt":
        raise TunesmithError(
            f"cpt.run got train.method: {cfg.train.method}.", "Call tunesmith.train.api.train(cfg)."
        )
    return sft.run(cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop)
