"""``method: ppo``: RLHF as in InstructGPT (policy, reward model, KL penalty to a reference), trained with
TRL's **RLOO** trainer, the maintained successor of its removed PPOTrainer.

    prompts -> load_prompts (train.prompts, else the prompts of data.train)
    reward  -> load_reward_scorer(train.reward_model)  (a finished method: reward run)
    policy  -> build_policy (base, or train.init_from = an SFT run)
    before  -> greedy answers to hold-out prompts, scored by the reward model
    fit     -> RLOOTrainer: num_generations samples per prompt, reward = reward model score,
               advantage = reward minus the mean reward of the other samples (leave-one-out baseline),
               KL penalty beta * KL(policy || reference)
    after   -> the same hold-out prompts again; save adapter/ or model/, summary.json

Why RLOO and not GRPO or our own PPO (docs/preference.md): RLOO is PPO's REINFORCE-style simplification
(Ahmadian et al. 2024) with no value network, so it needs no second model beside the reward model, works
with a LoRA policy whose reference is the same weights with the adapter disabled, and TRL maintains it.
GRPO differs mainly in normalising advantages by the group's standard deviation, which on 2-4 samples
from a tiny model blows up noise; RLOO's leave-one-out mean is the better fit for few samples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.formats import Issue, Record, _as_messages, _norm_message, iter_raw_rows
from tunesmith.errors import TunesmithError
from tunesmith.models.scoring import RewardScorer, load_reward_scorer
from tunesmith.results.run import PpoExtras, ProbeGeneration
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
from tunesmith.train.runs import Run, RunResult

N_PROBE_PROMPTS = 4  # hold-out prompts answered greedily before/after (kept small: generation is slow on CPU)


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a policy against ``train.reward_model`` into a new run folder (contract: train/api.py)."""
    with preference_run("ppo", cfg, resume, force) as run:
        return _train(run.cfg, run, on_progress, should_stop)


def _train(cfg: ProjectConfig, run: Run, on_progress: Any, should_stop: Any) -> RunResult:
    no_progress_bars()
    prompts = load_prompts(prompts_path(cfg))
    train_prompts, probe = split_probe(prompts, cfg.data.seed)
    scorer = load_reward_scorer(reward_run(cfg), max_len=cfg.data.max_seq_len)
    policy = build_policy(cfg)
    before = answer_and_score(policy.model, policy.tokenizer, scorer, probe, cfg.train.max_completion_length)
    sink = MetricsSink(run.log, on_progress, should_stop)
    trainer = build_trainer(cfg, policy, scorer, train_prompts, run.run_dir / "trl", sink)
    fit(trainer, run.run_dir / "trl")
    after = answer_and_score(trainer.model, policy.tokenizer, scorer, probe, cfg.train.max_completion_length)
    drop_ref_adapter(trainer.model)
    run.save_weights(trainer.model, policy.tokenizer)
    return run.finish(
        summarize(cfg, policy.base, train_prompts, before, after, sink),
        "stopped" if sink.stopped else "completed",
    )


# --------------------------------------------------------------------------- inputs


def prompts_path(cfg: ProjectConfig) -> Path:
    path = cfg.train.prompts or cfg.data.train
    if path is None:
        raise TunesmithError(
            "method: ppo needs prompts: set train.prompts (or data.train).",
            'A JSONL file with one {"prompt": "..."} or {"messages": [...]} per line.',
        )
    return Path(path)


def reward_run(cfg: ProjectConfig) -> Path:
    path = cfg.train.reward_model
    if path is None or not Path(path).exists():
        raise TunesmithError(
            f"train.reward_model {path} does not exist.",
            "Train a reward model first (method: reward) and set train.reward_model to its run folder.",
        )
    return Path(path)


def load_prompts(path: Path) -> list[list[dict[str, Any]]]:
    """Prompts as chat messages ending in a user (or tool) turn. Each line is ``{"prompt": str | messages}``,
    ``{"messages": [...]}`` (a trailing assistant answer is dropped: its conversation is the prompt) or a
    preference pair (its prompt). Every bad line is reported with its number; none is skipped silently."""
    prompts: list[Record] = []
    errors: list[Issue] = []
    for line, obj in iter_raw_rows(Path(path)):
        if isinstance(obj, Issue):
            errors.append(obj)
            continue
        try:
            prompts.append(Record(line, {"messages": _prompt_messages(obj)}))
        except ValueError as exc:
            errors.append(
                Issue(
                    line,
                    "bad_prompt",
                    f"Line {line}: {exc}",
                    'Use {"prompt": "..."} or {"messages": [...]} ending with the user turn.',
                )
            )
    if errors:
        shown = "\n".join(f"  line {e.line}: {e.message}" for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise TunesmithError(f"{path} has {len(errors)} bad prompt line(s):\n{shown}{more}", errors[0].hint)
    if len(prompts) < 2:
        raise TunesmithError(
            f"{path} holds {len(prompts)} prompt(s).",
            "Give at least 2 prompts (one is kept aside to compare before/after).",
        )
    return [r.data["messages"] for r in prompts]


def _prompt_messages(obj: Any) -> list[dict[str, Any]]:
    from tunesmith.data.formats import RowError

    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}.")
    try:
        if "messages" in obj and isinstance(obj["messages"], list) and obj["messages"]:
            msgs = [_norm_message(m, i) for i, m in enumerate(obj["messages"])]
            while msgs and msgs[-1]["role"] == "assistant":
                msgs = msgs[:-1]
        elif "prompt" in obj:
            msgs = _as_messages(obj["prompt"], "user", "prompt")
        else:
            raise ValueError(
                f"no 'prompt' or 'messages' field (fields: {', '.join(list(obj)[:6]) or 'none'})."
            )
    except RowError as exc:
        raise ValueError(exc.message) from None
    if not msgs or msgs[-1]["role"] not in ("user", "tool"):
        raise ValueError("the prompt must end with a user (or tool) turn.")
    return msgs


def split_probe(
    prompts: list[list[dict[str, Any]]], seed: int
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """A few prompts (about ``min(N_PROBE_PROMPTS, n // 5)``, at least one) kept aside for the before/after
    comparison, with ``data split``'s splitter: a near-copy of a probe prompt never trains."""
    from tunesmith.data.formats import LoadedData, Record
    from tunesmith.data.split import holdout_split

    if len(prompts) < 2:
        return prompts[1:], prompts[:1]
    texts = ["\n".join(f"{m['role']}: {m.get('content') or ''}" for m in p) for p in prompts]
    data = LoadedData(Path("prompts"), "text", [Record(i + 1, {"text": t}) for i, t in enumerate(texts)])
    n = min(N_PROBE_PROMPTS, max(1, len(prompts) // 5))
    train_idx, probe_idx = holdout_split(data, n / len(prompts), seed, at_least_one=True)
    if not probe_idx:  # every prompt a near-copy of the others: one of them still serves as the probe
        probe_idx = [train_idx.pop(0)]
    return [prompts[i] for i in train_idx], [prompts[i] for i in probe_idx]


# --------------------------------------------------------------------------- training


def build_trainer(
    cfg: ProjectConfig,
    policy: Any,
    scorer: RewardScorer,
    prompts: list[list[dict[str, Any]]],
    out_dir: Path,
    sink: MetricsSink,
) -> Any:
    """TRL's RLOOTrainer with the reward model as its reward function (fp32 on CPU, no printing)."""
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    t = cfg.train
    g = t.num_generations
    per_device = max(g, t.fixed("batch_size") - t.fixed("batch_size") % g)  # completions per step: whole groups of g samples
    args = trl_args(
        RLOOConfig,
        cfg,
        out_dir,
        per_device_train_batch_size=per_device,
        num_generations=g,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        beta=t.beta,
        log_completions=False,
    )
    trainer = RLOOTrainer(
        model=policy.model,
        reward_funcs=reward_function(scorer),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=policy.tokenizer,
        peft_config=policy.peft_config,
    )
    keep_fp32_adapters(trainer.model)
    return quiet(trainer, sink)


def reward_function(scorer: RewardScorer) -> Any:
    """TRL reward function: the reward model's score of (prompt + sampled answer)."""

    def reward_model_score(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        convs = [
            _as_conv(p, "user") + _as_conv(c, "assistant") for p, c in zip(prompts, completions, strict=True)
        ]
        return scorer.score(convs)

    return reward_model_score


def _as_conv(x: Any, role: str) -> list[dict[str, Any]]:
    return (
        [{"role": m["role"], "content": m["content"]} for m in x]
        if isinstance(x, list)
        else [{"role": role, "content": str(x)}]
    )


def answer_and_score(
    model: Any, tokenizer: Any, scorer: RewardScorer, prompts: list[list[dict[str, Any]]], max_tokens: int
) -> list[dict[str, Any]]:
    """Greedy answers to ``prompts`` and their reward-model scores."""
    from tunesmith.models.generate import GenerationSettings, generate

    gens = generate(model, tokenizer, prompts, GenerationSettings(max_tokens=max_tokens))
    scores = scorer.score(
        [p + [{"role": "assistant", "content": g.text}] for p, g in zip(prompts, gens, strict=True)]
    )
    return [
        {"prompt": p[-1]["content"], "answer": g.text, "reward": s}
        for p, g, s in zip(prompts, gens, scores, strict=True)
    ]


def summarize(
    cfg: ProjectConfig,
    base: str,
    prompts: list[Any],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    sink: MetricsSink,
) -> dict[str, Any]:
    rewards = sink.series("reward")  # TRL logs the mean reward of each step's samples
    r_first, r_last = first_last(rewards) if rewards else (None, None)
    kl = sink.series("kl")
    extras = PpoExtras(
        algorithm="rloo",
        init_from=str(cfg.train.init_from) if cfg.train.init_from else None,
        reward_model=str(cfg.train.reward_model),
        beta=cfg.train.beta,
        num_generations=cfg.train.num_generations,
        train_reward_first=r_first,
        train_reward_last=r_last,
        kl_last=kl[-1] if kl else None,
        probe_reward_before=sum(r["reward"] for r in before) / len(before),
        probe_reward_after=sum(r["reward"] for r in after) / len(after),
        probe_generations=[
            ProbeGeneration(
                prompt=b["prompt"],
                before=b["answer"],
                reward_before=b["reward"],
                after=a["answer"],
                reward_after=a["reward"],
            )
            for b, a in zip(before, after, strict=True)
        ],
    )
    return {"base_model": base, "train_examples": len(prompts), **curve_measures(sink), "extras": extras}
