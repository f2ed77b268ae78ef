"""PPO's pieces (train/ppo_core.py) on hand-computed cases: GAE, the clipped policy and value losses, the KL
estimators, the per-token reward, the adaptive KL controller and the answer mask."""

from __future__ import annotations

import pytest
import torch

from tunesmith.train.ppo_core import (
    KlController,
    completion_mask,
    gae,
    kl_k1,
    kl_k3,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)

pytestmark = pytest.mark.unit


def test_gae_matches_a_hand_computed_case() -> None:
    # row 0: gamma 1, lam 0.5. t=2: delta = 1 - 0.7 = 0.3 -> A=0.3; t=1: delta = 0.7 - 0.6 = 0.1 ->
    # A = 0.1 + 0.5*0.3 = 0.25; t=0: delta = 0.6 - 0.5 = 0.1 -> A = 0.1 + 0.5*0.25 = 0.225
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.225, 0.25, 0.3])
    assert ret[0].tolist() == pytest.approx([0.725, 0.85, 1.0])


def test_gae_ends_the_episode_at_the_answers_last_token() -> None:
    # row with padding at t=2 (a garbage value there must not leak): gamma 0.9, lam 1.
    # t=1 is the last token: delta = 2 - 0.5 = 1.5; t=0: delta = 0.9*0.5 - 1 = -0.55 -> A = -0.55 + 0.9*1.5 = 0.8
    rewards = torch.tensor([[0.0, 2.0, 0.0]])
    values = torch.tensor([[1.0, 0.5, 9.0]])
    adv, ret = gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.9, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.8, 1.5, 0.0])
    assert ret[0].tolist() == pytest.approx([1.8, 2.0, 0.0])


def test_gae_with_lambda_one_is_the_monte_carlo_return_minus_the_value() -> None:
    torch.manual_seed(0)
    rewards, values = torch.randn(2, 5), torch.randn(2, 5)
    adv, ret = gae(rewards, values, torch.ones(2, 5), gamma=1.0, lam=1.0)
    future = rewards.flip(1).cumsum(1).flip(1)
    assert torch.allclose(ret, future, atol=1e-6) and torch.allclose(adv, future - values, atol=1e-6)


def test_policy_loss_clips_the_ratio_pessimistically() -> None:
    # ratio 1.5, A=+1: min(1.5, 1.2) -> loss -1.2 (clipped); ratio 0.5, A=+1: min(0.5, 0.8) -> -0.5 (not
    # clipped); ratio 0.5, A=-1: min(-0.5, -0.8) -> 0.8 (clipped). Mean -0.3, two of three clipped.
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5]])).requires_grad_()
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, clipfrac = policy_loss(logp, old, adv, torch.ones(1, 3), cliprange=0.2)
    assert loss.item() == pytest.approx(-0.3) and clipfrac.item() == pytest.approx(2 / 3)
    loss.backward()
    # a clipped token gives no gradient; the unclipped one gives -A * ratio / 3 (d ratio / d logp = ratio)
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.5 / 3, 0.0])


def test_policy_loss_ignores_padding() -> None:
    logp = torch.tensor([[0.1, 5.0]])
    loss, _ = policy_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(-torch.exp(torch.tensor(0.1)).item())  # token 1 is padding


def test_value_loss_takes_the_larger_of_clipped_and_unclipped() -> None:
    # token 0: V moves 0 -> 1 but the clip keeps 0.2: (0.2 - 2)^2 = 3.24 > (1 - 2)^2 = 1; token 1: both 0
    values = torch.tensor([[1.0, 0.1]])
    loss, clipfrac = value_loss(values, torch.zeros(1, 2), torch.tensor([[2.0, 0.1]]), torch.ones(1, 2), 0.2)
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.0) / 2) and clipfrac.item() == pytest.approx(0.5)


def test_kl_estimators_are_unbiased_for_the_exact_kl() -> None:
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    gen = torch.Generator().manual_seed(0)
    a = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, logq = p.log()[a], q.log()[a]
    assert float(kl_k1(logp, logq).mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_k3(logp, logq).mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_k3(logp, logq).min()) >= 0.0 and float(kl_k1(logp, logq).min()) < 0.0
    assert float(kl_k1(logp, logp).abs().max()) == 0.0 and float(kl_k3(logp, logp).abs().max()) == 0.0


def test_token_rewards_put_the_score_on_the_last_answer_token() -> None:
    kl = torch.tensor([[0.5, 1.0, 2.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = token_rewards(torch.tensor([3.0, -1.0]), kl, mask, kl_coef=0.1)
    assert r[0].tolist() == pytest.approx([-0.05, 3.0 - 0.1, 0.0])
    assert r[1].tolist() == pytest.approx([-0.1, -0.1, -1.0 - 0.1])


def test_adaptive_kl_controller_follows_ziegler() -> None:
    ctl = KlController(0.1, target=6.0, horizon=100)
    assert ctl.update(12.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    assert ctl.update(5.4, 10) == pytest.approx(0.102 * (1 - 0.1 * 0.1))  # error -0.1
    fixed = KlController(0.1)
    assert fixed.update(100.0, 10) == 0.1


def test_completion_mask_keeps_the_stop_token_and_drops_what_follows() -> None:
    tokens = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0]])
    assert completion_mask(tokens, [2]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_whiten_has_zero_mean_and_unit_variance_on_the_mask() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    assert w[0, 3].item() == 0.0
    assert w[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (w[0, :3] ** 2).mean().item() == pytest.approx(1.0, abs=1e-4)
