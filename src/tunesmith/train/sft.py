"""Supervised fine-tuning (chat, completion, classification, extraction data): the whole flow in one place.

check the run folder -> tokenizer -> data (refuse errors, split, mask) -> memory check -> run folder
-> model (full / lora / qlora / dora) -> probe before -> fit -> probe after -> save weights -> summary
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.train.runs import Run, RunResult

_log = logging.getLogger(__name__)


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train ``cfg`` (method sft or cpt) and return the run folder and summary. See train/api.py."""
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.adapters import build_trainable
    from tunesmith.train.data import prepare_data
    from tunesmith.train.loop import _dist, fit
    from tunesmith.train.plan import check_budget, describe, make_plan

    run_, resume_from = open_or_preflight(cfg, resume, on_progress)
    cfg = run_.cfg if run_ is not None else cfg
    check_budget(cfg, world=_dist()[0])  # a budget that cannot hold one example is refused before any data
    tokenizer = load_tokenizer(cfg.model.name)
    data = prepare_data(cfg, tokenizer, force=force)
    plan = make_plan(cfg, data.train, _dist()[0])
    if on_progress is not None:
        on_progress({"event": "plan", **describe(plan.schedule, plan.memory)})
    run_ = run_ or create_run_for(cfg)
    try:
        model = build_trainable(_with_checkpointing(cfg, plan.memory.gradient_checkpointing))
        before = _probe(model, tokenizer, cfg)
        result = fit(
            model,
            data.train,
            data.holdout,
            cfg,
            run_,
            plan=plan,
            resume_from=resume_from,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        if _is_fsdp_sharded(model):  # FSDP shards the model in place; the rest works on a whole copy
            from tunesmith.train.distributed import unsharded_copy

            model = unsharded_copy(model, cfg)
        after = _probe(model, tokenizer, cfg)
        run_.save_weights(model, tokenizer)
    except BaseException as exc:
        from tunesmith.train.divergence import failure_text

        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run_.finish({"error": failure_text(exc)}, status)
        raise
    summary = summarize(result, data, before, after, cfg, resume_from)
    out = run_.finish(summary, result.status)
    return RunResult(out.run_dir, out.summary, model=model)


def _is_fsdp_sharded(model: Any) -> bool:
    # under train.distributed: fsdp, fit shards the decoder blocks in place (train/distributed.py)
    from tunesmith.train.loss import _is_fsdp

    return any(_is_fsdp(m) for m in model.modules())


def _with_checkpointing(cfg: ProjectConfig, on: bool) -> ProjectConfig:
    # the model is built with the plan's choice (train.gradient_checkpointing may be auto)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"gradient_checkpointing": on})})


def open_or_preflight(
    cfg: ProjectConfig, resume: Path | None, on_progress: Callable[[dict[str, Any]], None] | None = None
) -> tuple[Run | None, Path | None]:
    """For a resume: the reopened run and its newest intact checkpoint (newer damaged ones are skipped,
    each reported to ``on_progress`` as a ``checkpoint_skipped`` event and logged). Otherwise (None, None)
    after checking that a new run folder can be created (nothing is written yet).

    Raises:
        TunesmithError: when the folder is not a run, its config differs, or no checkpoint is intact (the
            run folder, its summary and its registry record are then left as they were).
    """
    from tunesmith.train.checkpoints import forget_newer, newest_intact_checkpoint
    from tunesmith.train.runs import check_new_run_dir, open_run_for_resume

    if resume is None:
        from tunesmith.train.loop import _dist

        if _dist()[1] == 0:  # under --nproc, rank 0 alone checks (it creates the folder the others would see)
            check_new_run_dir(cfg)
        return None, None
    from tunesmith.train.loop import _dist

    last, skipped = None, []
    if (Path(resume) / "config.resolved.yaml").is_file():  # else open_run_for_resume says what it is not
        # verified before the run is reopened, so a refusal leaves its record and summary untouched
        last, skipped = newest_intact_checkpoint(Path(resume) / "checkpoints")
        if last is None and skipped:
            n_older = len(skipped) - 1
            older = f" (and {n_older} older checkpoint(s) are damaged too)" if n_older else ""
            raise TunesmithError(
                f"Cannot resume {resume}: no checkpoint is intact; {skipped[0]}{older}.",
                "Start a new run; the damaged run folder is left as it was.",
            )
    reopened = open_run_for_resume(resume, cfg, is_main=_dist()[1] == 0)
    if last is None:
        raise TunesmithError(
            f"{resume} has no complete checkpoint to resume from.",
            "Start a new run (a run saves its first checkpoint at train.save_every steps or the end of epoch 1).",
        )
    if skipped and reopened.is_main:
        forget_newer(reopened.checkpoints_dir, last)
    for damage in skipped:
        _log.warning("skipped checkpoint %s: %s", damage.checkpoint, damage)
        if on_progress is not None:
            on_progress(
                {"event": "checkpoint_skipped", "path": str(damage.checkpoint), "file": damage.file,
                 "reason": str(damage), "resume_from": str(last)}
            )  # fmt: skip
    return reopened, last


def create_run_for(cfg: ProjectConfig) -> Run:
    from tunesmith.train.loop import _dist
    from tunesmith.train.runs import create_run

    return create_run(cfg, is_main=_dist()[1] == 0)


def summarize(
    result: Any,
    data: Any,
    before: float | None,
    after: float | None,
    cfg: ProjectConfig,
    resume_from: Path | None,
) -> dict[str, Any]:
    """The run's measures (``RunSummary`` fields) with the sft/cpt extras."""
    from tunesmith.results.run import Forgetting, LoopExtras
    from tunesmith.train.probe import forgetting_report

    s = result.state
    extras = LoopExtras(
        method=cfg.train.method,
        task=data.task,
        lr=result.plan["lr"] if result.plan else cfg.train.resolved_lr(),
        stopped_early=s.stopped_early,
        weights=result.weights_from,
        skipped_lines=data.skipped_lines,
        truncated_answers=data.truncated_answers,
        forgetting=Forgetting(**forgetting_report(before, after))
        if before is not None and after is not None
        else None,
        plan=result.plan,
    )
    return {
        **result.summary_fields(len(data.train), len(data.holdout), resume_from),
        "extras": extras,
    }


def _probe(model: Any, tokenizer: Any, cfg: ProjectConfig) -> float | None:
    if not cfg.train.forgetting_probe:
        return None
    from tunesmith.train.probe import probe_loss

    return probe_loss(model, tokenizer, cfg)
