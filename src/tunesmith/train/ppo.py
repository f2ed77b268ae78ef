"""``method: ppo``: RLHF with Proximal Policy Optimization, written in tunesmith (no maintained library offers
PPO for this stack: TRL 1.16 removed its PPOTrainer). The algorithm of Ziegler et al. 2019 and InstructGPT:

    prompts -> load_prompt_rows (train.prompts, else the prompts of data.train); a few kept aside as the probe
    reward  -> load_reward(cfg): a reward run (train.reward_model) or a grader file (train.grader)
    policy  -> build_policy (base, or train.init_from = an SFT run), LoRA by default, with a value head (a
               linear layer on the policy's last hidden state) sharing the policy's backbone; fp32 on CPU
    before  -> greedy answers to the probe prompts, rewarded
    each step (train.batch_size prompts):
      rollout  -> one sampled answer per prompt (train.temperature, train.max_completion_length), its reward,
                  the policy's and the frozen reference's token log-probs (reference = the same weights with
                  the adapter disabled, or the SFT adapter of train.init_from, or a frozen copy for full),
                  the value head's values
      rewards  -> per token -kl_coef * (log pi - log ref), plus the score on the answer's last token
      GAE      -> advantages (whitened) and returns (train.gamma, train.lam)
      optimise -> train.num_ppo_epochs passes over train.num_mini_batches mini-batches: the clipped policy
                  objective (train.cliprange) + train.vf_coef * the clipped value loss (train.cliprange_value)
      KL       -> the coefficient starts at train.beta; adaptive toward train.kl_target when set, else fixed
    after   -> the probe prompts again; adapter/ (or model/) and value_head.safetensors, summary.json;
               metrics.jsonl has reward, kl, kl_coef, value_loss, policy_loss per step

Sources: Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv:1707.06347); Schulman et al.
2015, "High-Dimensional Continuous Control Using Generalized Advantage Estimation" (arXiv:1506.02438); Ziegler
et al. 2019, "Fine-Tuning Language Models from Human Preferences" (arXiv:1909.08593); Ouyang et al. 2022,
"Training language models to follow instructions with human feedback" (arXiv:2203.02155). The formulas, each
tested on a hand-computed case, are in train/ppo_core.py. The flow runs on the run folder conventions of every
method (train/runs.py: RunSummary, metrics.jsonl); it writes no checkpoints, so a run cannot be resumed.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.results.run import RlExtras
from tunesmith.train import ppo_core as core
from tunesmith.train.pref_common import build_policy, first_last, keep_fp32_adapters, preference_run
from tunesmith.train.rl_common import (
    PromptRow,
    Reward,
    answer_and_score,
    load_prompt_rows,
    load_reward,
    probe_fields,
    prompts_path,
    split_probe,
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
    """Train a policy with PPO against the run's reward into a new run folder (contract: train/api.py).

    Raises:
        TunesmithError: for ``resume``/``force``, missing prompts, a reward that cannot load, or a run that
            diverged (non-finite loss).
    """
    with preference_run("ppo", cfg, resume, force) as run:
        return _train(run.cfg, run, on_progress or (lambda e: None), should_stop or (lambda: False))


def _train(
    cfg: ProjectConfig, run: Run, emit: Callable[..., None], should_stop: Callable[[], bool]
) -> RunResult:
    train_rows, probe = split_probe(load_prompt_rows(prompts_path(cfg)), cfg.data.seed)
    reward = load_reward(cfg)
    state = build_state(cfg, len(train_rows))
    before = answer_and_score(state.model, state.tokenizer, reward, probe, cfg.train.max_completion_length)
    emit({"event": "start", "step": 0, "total_steps": state.total_steps, "resumed": False})
    stopped = False
    for step, batch in enumerate(prompt_batches(train_rows, cfg, state.total_steps), start=1):
        rollout = sample(state, batch, reward)
        stats = optimise(state, rollout)
        stats["kl_coef"] = state.kl.value
        state.kl.update(stats["kl"], len(batch))
        log_step(state, run, step, stats, emit)
        if should_stop():
            stopped = True
            break
    after = answer_and_score(state.model, state.tokenizer, reward, probe, cfg.train.max_completion_length)
    save(state, run)
    return run.finish(
        summarize(cfg, state, reward, train_rows, before, after), "stopped" if stopped else "completed"
    )


# --------------------------------------------------------------------------- state


@dataclass
class PpoState:
    """Everything a step reads and updates: the policy (+ value head), the reference, optimiser, schedule."""

    cfg: ProjectConfig
    model: Any
    tokenizer: Any
    value_head: Any
    reference: Any  # a frozen full copy (finetune: full), else None: the reference is an adapter switch
    ref_adapter: bool  # the reference is the SFT adapter loaded as "ref" (train.init_from)
    optimizer: Any
    scheduler: Any
    kl: core.KlController
    total_steps: int
    stop_ids: list[int]
    base: str
    history: list[dict[str, float]] = field(default_factory=list)
    tokens_seen: int = 0
    started: float = field(default_factory=time.monotonic)


def build_state(cfg: ProjectConfig, n_prompts: int) -> PpoState:
    """The policy with a fresh LoRA adapter (or the SFT run's, or every weight for full), its value head,
    the reference, AdamW over both and the learning-rate schedule."""
    import copy

    import torch
    from peft import get_peft_model
    from transformers import get_scheduler

    from tunesmith.models.generate import stop_token_ids

    t = cfg.train
    policy = build_policy(cfg)
    model, reference, ref_adapter = policy.model, None, False
    if policy.peft_config is not None:
        model = get_peft_model(model, policy.peft_config)
    elif policy.init_adapter is not None and t.finetune != "full":
        model.load_adapter(str(policy.init_adapter), adapter_name="ref", is_trainable=False)
        model.set_adapter("default")
        ref_adapter = True
    elif not hasattr(model, "peft_config"):
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    keep_fp32_adapters(model)
    model.eval()  # no dropout: the rollout's log-probs and the update's must come from the same function
    hidden = model.config.hidden_size
    value_head = torch.nn.Linear(hidden, 1)
    torch.nn.init.zeros_(value_head.weight)  # V = 0 at first: no random critic noise in the first advantages
    torch.nn.init.zeros_(value_head.bias)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=t.resolved_lr(), weight_decay=t.weight_decay)
    total = t.max_steps or max(1, math.ceil(t.fixed("epochs") * n_prompts / t.fixed("batch_size")))
    updates = total * t.num_ppo_epochs * t.num_mini_batches
    scheduler = get_scheduler(
        t.lr_scheduler, optimizer, num_warmup_steps=int(t.fixed("warmup_ratio") * updates),
        num_training_steps=updates,
    )  # fmt: skip
    return PpoState(
        cfg, model, policy.tokenizer, value_head, reference, ref_adapter, optimizer, scheduler,
        core.KlController(t.beta, t.kl_target, t.kl_horizon), total, stop_token_ids(model, policy.tokenizer),
        policy.base,
    )  # fmt: skip


def prompt_batches(rows: list[PromptRow], cfg: ProjectConfig, total_steps: int) -> Iterator[list[PromptRow]]:
    """``total_steps`` batches of ``train.batch_size`` prompts: passes over the prompts, each shuffled
    (seeded by ``train.seed``)."""
    rng = random.Random(cfg.train.seed)
    size = min(cfg.train.fixed("batch_size"), len(rows))
    order: list[int] = []
    for _ in range(total_steps):
        while len(order) < size:
            order += rng.sample(range(len(rows)), len(rows))
        batch, order = order[:size], order[size:]
        yield [rows[i] for i in batch]


# --------------------------------------------------------------------------- rollout


@dataclass
class Rollout:
    """One batch of sampled answers and what PPO needs of them, ``[B, T]`` over the answer tokens."""

    sequences: Any  # [B, P + T] prompt (left-padded) + answer token ids
    attention: Any  # [B, P + T]
    prompt_len: int  # P
    mask: Any
    logp: Any
    values: Any
    advantages: Any
    returns: Any
    scores: Any  # [B]
    kl: Any  # [B, T] k1 per token
    kl_k3: Any


def sample(state: PpoState, batch: list[PromptRow], reward: Reward) -> Rollout:
    """Sample one answer per prompt, reward it and compute its advantages (no gradient)."""
    import torch

    from tunesmith.data.tokenize import prompt_ids

    t = state.cfg.train
    tok = state.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    prompts = [prompt_ids(tok, r.messages) for r in batch]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):  # left padding: every prompt ends at column P - 1
        ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    with torch.no_grad():
        seqs = state.model.generate(
            input_ids=ids, attention_mask=attn, do_sample=True, temperature=t.temperature, top_k=0, top_p=1.0,
            max_new_tokens=t.max_completion_length, eos_token_id=state.stop_ids, pad_token_id=pad,
        )  # fmt: skip
        answer = seqs[:, width:]
        mask = core.completion_mask(answer, state.stop_ids)
        attention = torch.cat([attn, mask.long()], dim=1)
        texts = [_answer_text(tok, a, m, state.stop_ids) for a, m in zip(answer, mask, strict=True)]
        scores = torch.tensor(reward.score([r.messages for r in batch], texts, [r.item for r in batch]))
        logp, values = forward(state, seqs, attention, width)
        with reference_mode(state):
            ref_logp, _ = forward(state, seqs, attention, width, reference=True)
        kl = core.kl_k1(logp, ref_logp) * mask
        rewards = core.token_rewards(scores, kl, mask, state.kl.value)
        advantages, returns = core.gae(rewards, values, mask, t.gamma, t.lam)
        advantages = core.whiten(advantages, mask)
    state.tokens_seen += int(attention.sum())
    return Rollout(seqs, attention, width, mask, logp, values * mask, advantages, returns, scores, kl,
                   core.kl_k3(logp, ref_logp) * mask)  # fmt: skip


def _answer_text(tok: Any, tokens: Any, mask: Any, stop_ids: list[int]) -> str:
    kept = [int(x) for x, m in zip(tokens, mask, strict=True) if m > 0 and int(x) not in stop_ids]
    return tok.decode(kept, skip_special_tokens=True).strip()


def forward(
    state: PpoState, seqs: Any, attention: Any, prompt_len: int, *, reference: bool = False
) -> tuple[Any, Any]:
    """Token log-probs of the answer tokens (at ``train.temperature``, as they were sampled) and the value
    head's value of the state before each; ``[B, T]`` each. ``reference``: the reference model's log-probs."""
    import torch

    model = state.reference if reference and state.reference is not None else state.model
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=seqs, attention_mask=attention, position_ids=positions,
                output_hidden_states=not reference, use_cache=False)  # fmt: skip
    logits = out.logits[:, prompt_len - 1 : -1].float() / state.cfg.train.temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, seqs[:, prompt_len:, None]).squeeze(-1)
    if reference:
        return logp, None
    hidden = out.hidden_states[-1][:, prompt_len - 1 : -1].float().detach()
    return logp, state.value_head(hidden).squeeze(-1)


@contextlib.contextmanager
def reference_mode(state: PpoState) -> Iterator[None]:
    """The policy's weights as the frozen reference: the adapter disabled (fresh LoRA), the SFT adapter
    (``ref``, train.init_from), or nothing to switch (full fine-tuning keeps a frozen copy)."""
    if state.ref_adapter:
        state.model.set_adapter("ref")
        try:
            yield
        finally:
            state.model.set_adapter("default")
    elif state.reference is None:
        with state.model.disable_adapter():
            yield
    else:
        yield


# --------------------------------------------------------------------------- update


def optimise(state: PpoState, r: Rollout) -> dict[str, float]:
    """``train.num_ppo_epochs`` passes of the clipped PPO loss over the rollout, in mini-batches."""
    import torch

    from tunesmith.train.divergence import TrainingDiverged

    t = state.cfg.train
    n = r.sequences.shape[0]
    parts = max(1, min(t.num_mini_batches, n))
    sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0,
                              "vf_clipfrac": 0.0}  # fmt: skip
    updates = 0
    params = [p for g in state.optimizer.param_groups for p in g["params"]]
    for _ in range(t.num_ppo_epochs):
        for idx in torch.randperm(n).chunk(parts):
            logp, values = forward(state, r.sequences[idx], r.attention[idx], r.prompt_len)
            mask = r.mask[idx]
            pg, clipfrac = core.policy_loss(logp, r.logp[idx], r.advantages[idx], mask, t.cliprange)
            vf, vf_clipfrac = core.value_loss(values, r.values[idx], r.returns[idx], mask, t.cliprange_value)
            loss = pg + t.vf_coef * vf
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    len(state.history) + 1, "the PPO loss", float(loss), t.resolved_lr(), None
                )
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            state.optimizer.step()
            state.scheduler.step()
            for k, v in (("loss", loss), ("policy_loss", pg), ("value_loss", vf), ("clipfrac", clipfrac),
                         ("vf_clipfrac", vf_clipfrac)):  # fmt: skip
                sums[k] += float(v.detach())
            updates += 1
    stats = {k: v / updates for k, v in sums.items()}
    stats["reward"] = float(r.scores.mean())
    stats["kl"] = float(r.kl.sum(dim=1).mean())  # nats per answer, the quantity the KL controller targets
    stats["kl_k3"] = float(r.kl_k3.sum(dim=1).mean())
    stats["completion_length"] = float(r.mask.sum(dim=1).mean())
    return stats


def log_step(
    state: PpoState, run: Run, step: int, stats: dict[str, float], emit: Callable[..., None]
) -> None:
    elapsed = time.monotonic() - state.started
    row = {"step": step, **{k: round(v, 6) for k, v in stats.items()},
           "learning_rate": state.scheduler.get_last_lr()[0], "tokens_per_s": state.tokens_seen / max(elapsed, 1e-9)}  # fmt: skip
    state.history.append(row)
    if step % state.cfg.train.logging_steps == 0 or step == state.total_steps:
        run.log(row)
    emit({"event": "step", "step": step, "total_steps": state.total_steps, "loss": row["loss"],
          "lr": row["learning_rate"], "tokens_per_s": row["tokens_per_s"], "reward": row["reward"],
          "kl": row["kl"], "value_loss": row["value_loss"],
          "eta_s": elapsed / step * (state.total_steps - step)})  # fmt: skip


# --------------------------------------------------------------------------- outputs


def save(state: PpoState, run: Run) -> None:
    """``adapter/`` (or ``model/``) as every method saves it, and the value head beside it (it is not needed
    to serve the policy; it is kept so the run's critic can be inspected)."""
    from safetensors.torch import save_file

    from tunesmith.train.pref_common import drop_ref_adapter

    drop_ref_adapter(state.model)
    run.save_weights(state.model, state.tokenizer)
    save_file({k: v.detach().contiguous() for k, v in state.value_head.state_dict().items()},
              str(run.run_dir / "value_head.safetensors"))  # fmt: skip


def summarize(
    cfg: ProjectConfig,
    state: PpoState,
    reward: Reward,
    rows: list[PromptRow],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
) -> dict[str, Any]:
    def series(key: str) -> list[float]:
        return [h[key] for h in state.history if key in h]

    losses, rewards, vloss = series("loss"), series("reward"), series("value_loss")
    r_first, r_last = first_last(rewards) if rewards else (None, None)
    v_first, v_last = first_last(vloss) if vloss else (None, None)
    l_first, l_last = first_last(losses) if losses else (None, None)
    kl = series("kl")
    extras = RlExtras(
        method="ppo", algorithm="ppo",
        init_from=str(cfg.train.init_from) if cfg.train.init_from else None,
        reward_model=str(cfg.train.reward_model) if cfg.train.reward_model else None,
        grader=str(cfg.train.grader) if cfg.train.grader else None,
        beta=cfg.train.beta, train_reward_first=r_first, train_reward_last=r_last,
        kl_last=kl[-1] if kl else None, kl_coef_last=state.kl.value,
        value_loss_first=v_first, value_loss_last=v_last, **probe_fields(before, after),
    )  # fmt: skip
    return {
        "base_model": state.base, "train_examples": len(rows), "steps": len(state.history),
        "total_steps": state.total_steps, "first_train_loss": l_first, "final_train_loss": l_last,
        "best_train_loss": min(losses) if losses else None, "tokens_seen": state.tokens_seen, "extras": extras,
    }  # fmt: skip
