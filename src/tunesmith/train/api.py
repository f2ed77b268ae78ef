"""The public training API: one call for every method. Other areas (server jobs, eval, preference) build on it.

    from tunesmith.train.api import train
    result = train(cfg, resume=None, force=False, on_progress=print, should_stop=lambda: False)
    result.run_dir      # runs/<run_id>/  (layout: see tunesmith.train.runs)
    result.summary      # a tunesmith.results.RunSummary, also in summary.json; result.status is its status
    result.model        # the trained model in memory (sft/cpt), or None

- ``resume``: a run folder; training continues from its last complete checkpoint with the same data order,
  optimizer, scheduler and RNG state. The run's saved config wins; ``cfg`` may differ only in
  ``train.{early_stopping_patience, save_every, keep_checkpoints, logging_steps, report_to}``.
- ``force``: train on the valid lines of data that has ``data check`` errors (default: refuse).
- ``on_progress(event)``: called from the training thread with dicts whose ``event`` is ``start``
  (total_steps, step, resumed), ``step`` (step, total_steps, epoch, loss, lr, tokens_per_s, tokens_trained,
  eta_s), ``eval`` (step, val_loss, best_val_loss) or ``checkpoint`` (step, path, best). Keep it fast.
- ``should_stop()``: polled after every optimizer step; when it returns True the loop saves a checkpoint
  and returns with status ``stopped`` (resume it later with ``resume=run_dir``). Use it for Ctrl-C,
  cancel and pause.

Statuses: completed, early_stopped, stopped, failed, interrupted. Errors the user can fix raise
``TunesmithError`` before anything is written (bad data, an existing run folder, an unwritable output
folder, a model that will not fit in memory).

Each method is one module with one entry point of the same contract as ``train`` itself, chosen by an
explicit ``match`` (no registry, no import by name):

    run(cfg, *, resume=None, force=False, on_progress=None, should_stop=None) -> RunResult

in train/sft.py, cpt.py, dpo.py, reward.py, ppo.py, rloo.py and grpo.py. Every method creates its own run folder
and records a failure in it; a keyword a method cannot honour is refused by that method before any folder is
created (e.g. ppo/rloo/grpo's ``resume`` and ``force``: they keep no resumable checkpoints, and prompts are
used only when all valid).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.train.runs import RunResult

__all__ = ["RunResult", "train"]


def train(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train ``cfg`` with its ``train.method``; see the module docstring for the contract.

    Raises:
        TunesmithError: for anything the user can fix (bad data, an existing run folder, a refused keyword).
    """
    match cfg.train.method:
        case "sft":
            from tunesmith.train.sft import run
        case "cpt":
            from tunesmith.train.cpt import run
        case "dpo":
            from tunesmith.train.dpo import run
        case "reward":
            from tunesmith.train.reward import run
        case "ppo":
            from tunesmith.train.ppo import run
        case "rloo":
            from tunesmith.train.rloo import run
        case "grpo":
            from tunesmith.train.grpo import run
        case other:
            raise TunesmithError(
                f"train.method: {other} is not a training method.",
                "Use sft, cpt, dpo, reward, ppo, rloo or grpo.",
            )
    return run(cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop)
