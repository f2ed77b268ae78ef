"""``method: rloo``: RLHF with TRL's **RLOO** trainer (REINFORCE Leave-One-Out, Ahmadian et al. 2024), against
a trained reward model or a grader. Until this method had its own name, ``method: ppo`` ran it (docs/rl.md).

    prompts -> load_prompt_rows (train.prompts, else the prompts of data.train)
    reward  -> load_reward(cfg)  (train.reward_model: a reward run, or train.grader: a grader file)
    policy  -> build_policy (base, or train.init_from = an SFT run)
    before  -> greedy answers to the probe prompts, rewarded
    fit     -> RLOOTrainer: num_generations samples per prompt, advantage = reward minus the mean reward of
               the other samples of the prompt (leave-one-out baseline), KL penalty beta * KL(policy || ref)
    after   -> the same probe prompts again; save adapter/ or model/, summary.json

RLOO has no value network: it needs no second model beside the reward, and with a LoRA policy its reference is
the same weights with the adapter disabled. ``method: ppo`` (train/ppo.py) is PPO with a value head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.results.run import RlExtras
from tunesmith.train.pref_common import (
    MetricsSink,
    build_policy,
    curve_measures,
    drop_ref_adapter,
    first_last,
    fit,
    keep_fp32_adapters,
    no_progress_bars,
    preference_run,
    quiet,
    trl_args,
)
from tunesmith.train.rl_common import (
    PromptRow,
    Reward,
    answer_and_score,
    load_prompt_rows,
    load_reward,
    probe_fields,
    prompts_path,
    split_probe,
    trl_dataset,
    trl_reward_function,
)
from tunesmith.train.runs import Run, RunResult


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a policy with RLOO against the run's reward into a new run folder (contract: train/api.py)."""
    with preference_run("rloo", cfg, resume, force) as run:
        return train_trl_rl("rloo", run.cfg, run, on_progress, should_stop)


def train_trl_rl(method: str, cfg: ProjectConfig, run: Run, on_progress: Any, should_stop: Any) -> RunResult:
    """The flow rloo and grpo share (they differ in the TRL trainer only)."""
    no_progress_bars()
    train_rows, probe = split_probe(load_prompt_rows(prompts_path(cfg)), cfg.data.seed)
    reward = load_reward(cfg)
    policy = build_policy(cfg)
    before = answer_and_score(policy.model, policy.tokenizer, reward, probe, cfg.train.max_completion_length)
    sink = MetricsSink(run.log, on_progress, should_stop)
    trainer = build_trainer(method, cfg, policy, reward, train_rows, run.run_dir / "trl", sink)
    fit(trainer, run.run_dir / "trl")
    after = answer_and_score(trainer.model, policy.tokenizer, reward, probe, cfg.train.max_completion_length)
    drop_ref_adapter(trainer.model)
    run.save_weights(trainer.model, policy.tokenizer)
    return run.finish(
        summarize(method, cfg, policy.base, reward, train_rows, before, after, sink),
        "stopped" if sink.stopped else "completed",
    )


def build_trainer(
    method: str,
    cfg: ProjectConfig,
    policy: Any,
    reward: Reward,
    rows: list[PromptRow],
    out_dir: Path,
    sink: MetricsSink,
) -> Any:
    """TRL's RLOOTrainer or GRPOTrainer with the run's reward as its reward function (fp32 on CPU, no
    printing). A step's batch is ``train.batch_size`` completions, rounded down to whole groups of
    ``num_generations`` samples of one prompt (at least one group)."""
    if method == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

    t = cfg.train
    g = t.num_generations
    per_device = max(g, t.fixed("batch_size") - t.fixed("batch_size") % g)
    args = trl_args(
        Config,
        cfg,
        out_dir,
        per_device_train_batch_size=per_device,
        num_generations=g,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        beta=t.beta,
        log_completions=False,
    )
    trainer = Trainer(
        model=policy.model,
        reward_funcs=trl_reward_function(reward),
        args=args,
        train_dataset=trl_dataset(rows),
        processing_class=policy.tokenizer,
        peft_config=policy.peft_config,
    )
    keep_fp32_adapters(trainer.model)
    return quiet(trainer, sink)


def summarize(
    method: str,
    cfg: ProjectConfig,
    base: str,
    reward: Reward,
    rows: list[PromptRow],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    sink: MetricsSink,
) -> dict[str, Any]:
    rewards = sink.series("reward")  # TRL logs the mean reward of each step's samples
    r_first, r_last = first_last(rewards) if rewards else (None, None)
    kl = sink.series("kl")
    extras = RlExtras(
        method=method,
        algorithm=method,
        init_from=str(cfg.train.init_from) if cfg.train.init_from else None,
        reward_model=str(cfg.train.reward_model) if cfg.train.reward_model else None,
        grader=str(cfg.train.grader) if cfg.train.grader else None,
        beta=cfg.train.beta,
        num_generations=cfg.train.num_generations,
        train_reward_first=r_first,
        train_reward_last=r_last,
        kl_last=kl[-1] if kl else None,
        **probe_fields(before, after),
    )
    return {"base_model": base, "train_examples": len(rows), **curve_measures(sink), "extras": extras}
