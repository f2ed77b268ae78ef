"""The flow of ``method: dpo`` and ``method: reward`` on tunesmith's own loop (train/loop.py), in one place.

check the run folder (or reopen it for --resume) -> memory budget -> tokenizer -> pairs (tokenize, cut
prompt-first to data.max_seq_len) -> plan -> run folder -> model -> reference log-probs (dpo) / scores before
(reward) -> fit (pairs packed, pref_engine objective) -> hold-out accuracy after -> save weights -> summary

The loop is sft's, so checkpoints, ``--resume``, Ctrl-C (``should_stop``), early stopping on the hold-out
preference loss, progress events, trackers and the jobs worker's crash recovery behave as they do for sft.
Pairs are always packed (``train.packing`` is sft's padding switch; a pair's two sequences need the
position restart). Several processes (``--nproc``) are not supported for these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.train.runs import RunResult

Progress = Callable[[dict[str, Any]], None]


def run(
    method: Literal["dpo", "reward"],
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a DPO policy or a reward model on ``cfg``'s preference pairs (contract: train/api.py).

    Raises:
        TunesmithError: before any folder is written, for ``force``, several processes, an unknown DPO loss
            type, qlora reward models, a run folder that cannot be resumed, or a budget that cannot hold a pair.
    """
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.loop import _dist, fit
    from tunesmith.train.plan import check_budget, describe, make_plan
    from tunesmith.train.pref_common import load_pairs
    from tunesmith.train.pref_engine import build_pair_examples
    from tunesmith.train.sft import _with_checkpointing, create_run_for, open_or_preflight

    _refuse(method, cfg, force, _dist()[0])
    run_, resume_from = open_or_preflight(cfg, resume, on_progress)
    cfg = run_.cfg if run_ is not None else cfg
    check_budget(cfg)
    tokenizer = load_tokenizer(_tokenizer_source(cfg))
    pairs = load_pairs(cfg)
    train, cut_train = build_pair_examples(tokenizer, pairs.train, cfg.data.max_seq_len)
    holdout, cut_hold = build_pair_examples(tokenizer, pairs.holdout, cfg.data.max_seq_len)
    loop_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"packing": True})})
    plan = make_plan(loop_cfg, train, 1)
    emit = on_progress or (lambda event: None)
    emit({"event": "plan", **describe(plan.schedule, plan.memory)})
    if cut_train + cut_hold:
        emit({"event": "truncated", "pairs": cut_train + cut_hold, "max_seq_len": cfg.data.max_seq_len})
    run_ = run_ or create_run_for(cfg)
    try:
        model_cfg = _with_checkpointing(cfg, plan.memory.gradient_checkpointing)
        if method == "dpo":
            model, objective, before = _dpo_setup(model_cfg, train, holdout, loop_cfg)
        else:
            model, objective, before = _reward_setup(model_cfg, holdout, loop_cfg)
        result = fit(
            model, train, holdout, loop_cfg, run_, plan=plan, resume_from=resume_from,
            on_progress=on_progress, should_stop=should_stop, objective=objective,
        )  # fmt: skip
        after = _scores(method, model, holdout, loop_cfg)
        run_.save_weights(model, tokenizer)
    except BaseException as exc:
        from tunesmith.train.divergence import failure_text

        run_.finish(
            {"error": failure_text(exc)}, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        )
        raise
    summary = summarize(method, cfg, result, train, holdout, before, after, cut_train + cut_hold, resume_from)
    out = run_.finish(summary, result.status)
    return RunResult(out.run_dir, out.summary, model=model)


def _refuse(method: str, cfg: ProjectConfig, force: bool, world: int) -> None:
    if force:
        raise TunesmithError(
            f"--force is not supported for method: {method} (every preference line must be valid).",
            "Fix the lines `tunesmith data check` names, or drop them, and train again without --force.",
        )
    if world > 1:
        raise TunesmithError(
            f"method: {method} trains in one process (--nproc {world} given).", "Train it without --nproc."
        )
    if method == "dpo":
        from tunesmith.train.dpo import check_loss_type

        check_loss_type(cfg.train.loss_type)
    elif cfg.train.finetune == "qlora":
        raise TunesmithError(
            "train.finetune: qlora is not supported for method: reward (the 4-bit base and the scalar head "
            "do not train together on CPU).",
            "Use finetune: lora (the default for reward models) or full.",
        )


def _tokenizer_source(cfg: ProjectConfig) -> str:
    """An SFT run given as ``train.init_from`` may carry its own tokenizer (the one it trained with)."""
    if cfg.train.init_from is None or not Path(cfg.train.init_from).exists():
        return cfg.model.name
    from tunesmith.models.inference import locate_run_weights

    _, folder = locate_run_weights(Path(cfg.train.init_from))
    return str(folder) if (folder / "tokenizer_config.json").exists() else cfg.model.name


def _dpo_setup(
    cfg: ProjectConfig, train: list[Any], holdout: list[Any], loop_cfg: ProjectConfig
) -> tuple[Any, Any, Any]:
    """The policy, the DPO objective with the reference log-probs of every pair, and the hold-out's."""
    from tunesmith.train.dpo import check_loss_type
    from tunesmith.train.pref_engine import DpoObjective

    model, fresh_adapter = build_dpo_policy(cfg)
    reference = reference_logps(model, train + holdout, loop_cfg, fresh_adapter=fresh_adapter)
    objective = DpoObjective(check_loss_type(cfg.train.loss_type), cfg.train.beta, reference)
    return model, objective, reference


def _reward_setup(cfg: ProjectConfig, holdout: list[Any], loop_cfg: ProjectConfig) -> tuple[Any, Any, Any]:
    from tunesmith.train.pref_engine import RewardObjective, pair_rewards
    from tunesmith.train.reward import build_reward_model

    model, _ = build_reward_model(cfg)
    model.train()
    return model, RewardObjective(), pair_rewards(model, holdout, loop_cfg)


def _scores(method: str, model: Any, holdout: list[Any], cfg: ProjectConfig) -> Any:
    from tunesmith.train.pref_engine import pair_logps, pair_rewards

    return (pair_logps if method == "dpo" else pair_rewards)(model, holdout, cfg)


def build_dpo_policy(cfg: ProjectConfig) -> tuple[Any, bool]:
    """The policy in train mode and whether it is a fresh adapter (reference = base, adapter disabled).

    Without ``train.init_from``: ``adapters.build_trainable`` (as sft). With it: the SFT run's adapter loaded
    trainable, or its weights merged into the base for ``finetune: full`` (``pref_common.build_policy``)."""
    from tunesmith.train.adapters import build_trainable

    if cfg.train.init_from is None:
        return build_trainable(cfg), cfg.train.finetune != "full"
    from tunesmith.train.pref_common import build_policy, keep_fp32_adapters

    policy = build_policy(cfg)
    model = policy.model
    if cfg.train.finetune == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    keep_fp32_adapters(model)
    model.config.use_cache = False
    model.train()
    return model, False


def reference_logps(
    model: Any, examples: list[Any], cfg: ProjectConfig, *, fresh_adapter: bool
) -> dict[Any, Any]:
    """(chosen, rejected) log-probs of every pair under the reference, computed once before training: the
    base with the adapter disabled for a fresh adapter, else the initial weights (an ``init_from`` SFT
    policy, or the base for full fine-tuning; on --resume the checkpoint is loaded only after this pass)."""
    import contextlib

    from tunesmith.train.pref_engine import pair_logps

    ctx = (
        model.disable_adapter()
        if fresh_adapter and hasattr(model, "disable_adapter")
        else contextlib.nullcontext()
    )
    with ctx:
        return pair_logps(model, examples, cfg)


def summarize(
    method: str,
    cfg: ProjectConfig,
    result: Any,
    train: list[Any],
    holdout: list[Any],
    before: dict[Any, Any],
    after: dict[Any, Any],
    truncated: int,
    resume_from: Path | None,
) -> dict[str, Any]:
    """The run's measures: the ``RunSummary`` fields of sft, and the method's hold-out accuracy extras."""
    from tunesmith.models.scoring import preference_accuracy
    from tunesmith.results.run import DpoExtras, RewardExtras
    from tunesmith.train.pref_engine import margins, mean

    s = result.state
    m_before, m_after = margins(before, holdout), margins(after, holdout)
    common = dict(
        stopped_early=s.stopped_early,
        weights=result.weights_from,
        truncated_pairs=truncated,
        plan=result.plan,
    )
    if method == "dpo":
        beta = cfg.train.beta
        extras: Any = DpoExtras(
            init_from=str(cfg.train.init_from) if cfg.train.init_from else None,
            beta=beta,
            loss_type=cfg.train.loss_type,
            holdout_preference_accuracy_before=preference_accuracy(m_before),
            holdout_preference_accuracy=preference_accuracy(m_after),
            holdout_logp_margin_before=mean(m_before),
            holdout_logp_margin=mean(m_after),
            holdout_reward_margin=mean([beta * (a - b) for a, b in zip(m_after, m_before, strict=True)]),
            **common,
        )
    else:
        extras = RewardExtras(
            holdout_pairwise_accuracy_before=preference_accuracy(m_before),
            holdout_pairwise_accuracy=preference_accuracy(m_after),
            holdout_reward_margin_before=mean(m_before),
            holdout_reward_margin=mean(m_after),
            **common,
        )
    return {
        "base_model": base_model(cfg),
        **result.summary_fields(len(train), len(holdout), resume_from),
        "extras": extras,
    }


def base_model(cfg: ProjectConfig) -> str:
    """The base the saved weights belong on: an ``init_from`` adapter run's own base, else ``model.name``."""
    if cfg.train.init_from is None:
        return cfg.model.name
    from tunesmith.models.inference import locate_run_weights, run_base_model

    kind, folder = locate_run_weights(Path(cfg.train.init_from))
    if kind == "model":
        return str(folder)
    return run_base_model(Path(cfg.train.init_from)) or cfg.model.name
