"""The preference engine's losses equal TRL 1.16's on the same log-probs: TRL's own ``DPOTrainer._compute_loss``
and ``RewardTrainer.compute_loss`` run here on scripted model outputs, so any change of TRL's formulas shows."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from tunesmith.train.dpo import DPO_LOSS_TYPES
from tunesmith.train.pref_engine import DISCOPOP_TAU, LABEL_SMOOTHING, dpo_losses, reward_loss

pytestmark = pytest.mark.unit

B, T = 4, 12


def _batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    # rows 0..B-1 chosen, B..2B-1 rejected; prompts of 3-5 tokens, answers to the end of varied lengths
    completion = torch.zeros(2 * B, T, dtype=torch.long)
    for row in range(2 * B):
        start = 3 + row % 3
        end = T - (row * 7) % 4
        completion[row, start:end] = 1
    attention = (completion.cumsum(1) > 0).long() | (torch.arange(T) < 6).long()
    token_logps = -torch.rand(2 * B, T - 1, generator=g) * 3 * completion[:, 1:]
    ref = -torch.rand(2 * B, generator=g) * 20 - token_logps.sum(1) * 0.9
    return {"completion": completion, "attention": attention, "token_logps": token_logps, "ref": ref}


def _trl_dpo_loss(loss_type: str, beta: float, b: dict) -> torch.Tensor:
    from trl import DPOTrainer

    outputs = SimpleNamespace(
        log_probs=b["token_logps"],
        entropy=torch.zeros_like(b["token_logps"]),
        mean_logits=torch.zeros_like(b["token_logps"]),
        is_top1=torch.zeros_like(b["token_logps"], dtype=torch.bool),
    )
    accel = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)
    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=accel, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, label_smoothing=LABEL_SMOOTHING, args=SimpleNamespace(discopop_tau=DISCOPOP_TAU),
        use_weighting=False, _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )  # fmt: skip
    inputs = {
        "input_ids": torch.ones(2 * B, T, dtype=torch.long),
        "attention_mask": b["attention"],
        "completion_mask": b["completion"],
        "ref_chosen_logps": b["ref"][:B],
        "ref_rejected_logps": b["ref"][B:],
    }
    return DPOTrainer._compute_loss(fake_self, lambda **kw: outputs, inputs, False)


def _ours(loss_type: str, beta: float, b: dict) -> torch.Tensor:
    sums = b["token_logps"].sum(1)
    counts = b["completion"][:, 1:].sum(1)
    chosen_mask = b["completion"][:B, 1:].bool()
    return dpo_losses(
        [loss_type], beta, sums[:B], sums[B:], b["ref"][:B], b["ref"][B:], counts[:B], counts[B:],
        b["token_logps"][:B][chosen_mask],
    )  # fmt: skip


@pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_every_dpo_loss_type_equals_trl_on_the_same_logps(loss_type: str, beta: float) -> None:
    for seed in range(3):
        b = _batch(seed)
        ours, trl = _ours(loss_type, beta, b), _trl_dpo_loss(loss_type, beta, b)
        # exo_pair at TRL's default label_smoothing=0 is +inf in both (log 0): TRL's meaning, kept
        torch.testing.assert_close(ours, trl.to(ours.dtype), rtol=1e-5, atol=1e-5)


def test_combined_loss_types_sum() -> None:
    b = _batch(7)
    both = dpo_losses(
        ["sigmoid", "sft"], 0.1, *(_split(b)), b["token_logps"][:B][b["completion"][:B, 1:].bool()]
    )
    torch.testing.assert_close(both, _ours("sigmoid", 0.1, b) + _ours("sft", 0.1, b))


def _split(b: dict) -> tuple:
    sums, counts = b["token_logps"].sum(1), b["completion"][:, 1:].sum(1)
    return sums[:B], sums[B:], b["ref"][:B], b["ref"][B:], counts[:B], counts[B:]


def test_reward_loss_equals_trl_reward_trainer() -> None:
    from trl import RewardTrainer

    g = torch.Generator().manual_seed(3)
    scores = torch.randn(2 * B, 1, generator=g) * 2
    accel = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x)
    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=accel, args=SimpleNamespace(center_rewards_coefficient=None),
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1, aux_loss_enabled=False,
    )  # fmt: skip
    inputs = {"input_ids": torch.ones(2 * B, T, dtype=torch.long), "attention_mask": torch.ones(2 * B, T)}
    fake_model = lambda **kw: SimpleNamespace(logits=scores)  # noqa: E731
    trl = RewardTrainer.compute_loss(fake_self, fake_model, inputs)
    torch.testing.assert_close(reward_loss(scores[:B, 0], scores[B:, 0]), trl, rtol=1e-6, atol=1e-6)
