"""``method: dpo``: Direct Preference Optimization on preference pairs, with TRL's ``DPOTrainer``.

    pairs  -> load_pairs (hold-out split)          policy -> build_policy (base or init_from SFT run)
    before -> hold-out log-prob margins            fit    -> DPOTrainer (beta, loss_type from train.*)
    after  -> hold-out margins and accuracy        save   -> adapter/ or model/, summary.json

Design choices (docs/preference.md):

- **Reference model**: for adapters the base with the adapter disabled (TRL does this when it wraps the
  model itself), so no second copy of the weights; when starting from an SFT adapter, TRL's frozen copy of
  that adapter (the reference is then the SFT policy, as in the DPO paper). Full fine-tuning loads a frozen
  copy (there is no other way to keep the reference).
- **Hold-out metrics** are computed by us, not by the Trainer's eval loop, with the same scorer ``tunesmith
  eval`` uses: preference accuracy = share of pairs whose summed answer log-prob margin (chosen minus
  rejected) is positive; reward margin = beta * (policy margin - reference margin), DPO's implicit reward.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.models.scoring import pair_logps, preference_accuracy
from tunesmith.results.run import DpoExtras
from tunesmith.train.pref_common import (
    MetricsSink,
    Pairs,
    build_policy,
    curve_measures,
    drop_ref_adapter,
    fit,
    keep_fp32_adapters,
    load_pairs,
    no_progress_bars,
    preference_run,
    quiet,
    trl_args,
)
from tunesmith.train.runs import Run, RunResult

# TRL 1.16 DPOConfig.loss_type values (checked before any model loads, so a typo fails in a second)
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a DPO policy on ``cfg``'s preference pairs into a new run folder (contract: train/api.py)."""
    with preference_run("dpo", cfg, resume, force) as run:
        return _train(run.cfg, run, on_progress, should_stop)


def _train(cfg: ProjectConfig, run: Run, on_progress: Any, should_stop: Any) -> RunResult:
    no_progress_bars()
    loss_types = check_loss_type(cfg.train.loss_type)
    pairs = load_pairs(cfg)
    policy = build_policy(cfg)
    before = pair_logps(policy.model, policy.tokenizer, pairs.holdout, max_len=cfg.data.max_seq_len)
    sink = MetricsSink(run.log, on_progress, should_stop)
    trainer = build_trainer(cfg, policy, pairs, loss_types, run.run_dir / "trl", sink)
    fit(trainer, run.run_dir / "trl")
    model = trainer.model
    after = pair_logps(model, policy.tokenizer, pairs.holdout, max_len=cfg.data.max_seq_len)
    drop_ref_adapter(model)
    run.save_weights(model, policy.tokenizer)
    return run.finish(
        summarize(cfg, policy.base, pairs, before, after, sink), "stopped" if sink.stopped else "completed"
    )


def check_loss_type(loss_type: str) -> list[str]:
    """``train.loss_type`` as TRL's list; several types may be combined with commas (e.g. ``sigmoid,sft``)."""
    types = [t.strip() for t in loss_type.split(",") if t.strip()]
    bad = [t for t in types if t not in DPO_LOSS_TYPES]
    if not types or bad:
        raise TunesmithError(
            f"train.loss_type {loss_type!r}: {', '.join(bad) or 'empty'} is not a DPO loss type.",
            f"Use one of {', '.join(DPO_LOSS_TYPES)} (or several joined by commas, e.g. sigmoid,sft).",
        )
    return types


def build_trainer(
    cfg: ProjectConfig, policy: Any, pairs: Pairs, loss_types: list[str], out_dir: Any, sink: MetricsSink
) -> Any:
    """TRL's DPOTrainer on the training pairs, configured from ``train.*`` (fp32 on CPU, no printing)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = trl_args(
        DPOConfig,
        cfg,
        out_dir,
        beta=cfg.train.beta,
        loss_type=loss_types,
        max_length=cfg.data.max_seq_len,
        precompute_ref_log_probs=False,
    )
    trainer = DPOTrainer(
        model=policy.model,
        args=args,
        train_dataset=Dataset.from_list(pairs.train),
        processing_class=policy.tokenizer,
        peft_config=policy.peft_config,
    )
    keep_fp32_adapters(trainer.model)
    return quiet(trainer, sink)


def summarize(
    cfg: ProjectConfig,
    base: str,
    pairs: Pairs,
    before: list[tuple[float, float]],
    after: list[tuple[float, float]],
    sink: MetricsSink,
) -> dict[str, Any]:
    """The run's measures (``RunSummary`` fields): training curve and, in the extras, hold-out accuracy and
    implicit reward margin before vs after."""
    beta = cfg.train.beta
    m_before = [c - r for c, r in before]
    m_after = [c - r for c, r in after]
    reward_margins = [beta * (a - b) for a, b in zip(m_after, m_before, strict=True)]
    extras = DpoExtras(
        init_from=str(cfg.train.init_from) if cfg.train.init_from else None,
        beta=beta,
        loss_type=cfg.train.loss_type,
        holdout_preference_accuracy_before=preference_accuracy(m_before),
        holdout_preference_accuracy=preference_accuracy(m_after),
        holdout_logp_margin_before=sum(m_before) / len(m_before),
        holdout_logp_margin=sum(m_after) / len(m_after),
        holdout_reward_margin=sum(reward_margins) / len(reward_margins),
    )
    return {
        "base_model": base,
        "train_examples": len(pairs.train),
        "holdout_examples": len(pairs.holdout),
        **curve_measures(sink),
        "extras": extras,
    }
