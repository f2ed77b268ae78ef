"""The pieces of PPO for language models, each a small pure function of tensors (train/ppo.py runs them).

Shapes: ``[B, T]`` = B sampled answers x T answer tokens, right-padded; ``mask`` is 1 on the answer's tokens
(up to and including its end-of-turn token) and 0 after. Log-probabilities are natural-log, per token.

Sources:
- Schulman, Wolski, Dhariwal, Radford, Klimov 2017, "Proximal Policy Optimization Algorithms"
  (arXiv:1707.06347): the clipped surrogate objective, eq. 7.
- Schulman, Moritz, Levine, Jordan, Abbeel 2015, "High-Dimensional Continuous Control Using Generalized
  Advantage Estimation" (arXiv:1506.02438): GAE, eqs. 11-16.
- Ziegler, Stiennon, Wu, Brown, Radford, Amodei, Christiano, Irving 2019, "Fine-Tuning Language Models from
  Human Preferences" (arXiv:1909.08593): reward = score - beta * KL(policy || reference) per token, and the
  adaptive KL coefficient (section 2.2).
- The value loss clipped around the old values is the variant of OpenAI's baselines ppo2 that
  Ziegler et al. and Ouyang et al. 2022 (InstructGPT, arXiv:2203.02155) used.
- KL estimators k1 and k3: Schulman 2020, "Approximating KL Divergence" (joschu.net/blog/kl-approx.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

Tensor = torch.Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """``x`` scaled to unit variance (and zero mean) over the masked positions; padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token ``log pi(a) - log ref(a)`` for a sampled from pi: the unbiased estimator of KL(pi || ref)
    whose sum over an answer Ziegler et al. subtract from the reward (it can be negative per sample)."""
    return logp - ref_logp


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token ``r - 1 - log r`` with ``r = ref(a) / pi(a)``: unbiased for KL(pi || ref) too, never negative,
    lower variance than k1 (Schulman 2020). Reported beside k1."""
    log_ratio = ref_logp - logp
    return log_ratio.exp() - 1 - log_ratio


def token_rewards(score: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """``[B, T]`` per-token rewards: ``-kl_coef * kl`` on every answer token, plus the answer's score
    (``[B]``, from the reward model or grader) on its last token (Ziegler et al. 2019, eq. 2)."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(score)), last] += score
    return rewards


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over the answer tokens.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the answer's last token is 0: the episode ends),
    ``A_t = delta_t + gamma * lam * A_{t+1}``, returns ``R_t = A_t + V_t`` (the value targets).
    Returns ``(advantages, returns)``, both ``[B, T]`` and 0 on padding.
    """
    values = values * mask
    batch, length = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(batch, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(length)):
        alive = mask[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        next_value = values[:, t + 1] * alive if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running * alive
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cliprange: float
) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise:
    ``mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))`` with ``ratio = exp(logp - old_logp)``.
    Returns ``(loss, clipfrac)``: clipfrac is the share of tokens where the clipped term was the larger."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, cliprange_value: float
) -> tuple[Tensor, Tensor]:
    """The clipped value loss: ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` with
    ``V_clip = V_old + clip(V - V_old, -eps_v, eps_v)``, so one update cannot move a value far from the
    rollout's. Returns ``(loss, clipfrac)``."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


@dataclass
class KlController:
    """The KL coefficient beta. Fixed when ``target`` is None; else adaptive (Ziegler et al. 2019, 2.2):
    ``e = clip(KL / target - 1, -0.2, 0.2)``, ``beta <- beta * (1 + e * n / horizon)`` after a batch of
    ``n`` answers whose mean KL (nats per answer) was ``KL``."""

    value: float
    target: float | None = None
    horizon: int = 10_000

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n / self.horizon
        return self.value


def completion_mask(tokens: Tensor, stop_ids: Any) -> Tensor:
    """``[B, T]`` mask of sampled answer tokens: 1 up to and including the first stop token, 0 after."""
    is_stop = torch.isin(tokens, torch.as_tensor(list(stop_ids), dtype=tokens.dtype, device=tokens.device))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0  # strictly after the first stop token
    return (~after_stop).to(torch.float32)
