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

Methods sft and cpt are trained here (train/sft.py, train/cpt.py); dpo, reward and ppo are dispatched to
``tunesmith.train.<method>.run(cfg, run, ...)``, which receive a created ``runs.Run`` plus whichever of
``resume``, ``force``, ``on_progress``, ``should_stop`` their signature accepts, and return a RunResult.
"""

from __future__ import annotations

import importlib
import inspect
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
    """Train ``cfg`` with its ``train.method``; see the module docstring for the contract."""
    method = cfg.train.method
    if method in ("sft", "cpt"):
        module = importlib.import_module(f"tunesmith.train.{method}")
        return module.run(cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop)
    return _run_preference(
        method, cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop
    )


def _run_preference(method: str, cfg: ProjectConfig, **kwargs: Any) -> RunResult:
    try:
        module = importlib.import_module(f"tunesmith.train.{method}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tunesmith.train.{method}":
            raise
        raise TunesmithError(
            f"train.method: {method} is not available in this build.", "Use sft or cpt."
        ) from None
    from tunesmith.train.pref_common import refuse_resume
    from tunesmith.train.runs import create_run, open_run_for_resume

    resume = kwargs.get("resume")
    refuse_resume(method, resume)  # before the run folder is opened: a refusal must not mark it failed
    run = open_run_for_resume(resume, cfg) if resume is not None else create_run(cfg)
    accepted = inspect.signature(module.run).parameters
    extra = {k: v for k, v in kwargs.items() if k in accepted}
    try:
        return module.run(run.cfg, run, **extra)
    except BaseException as exc:
        from tunesmith.train.divergence import failure_text

        run.finish(
            {"error": failure_text(exc)},
            "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
        )
        raise
