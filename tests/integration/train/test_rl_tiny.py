"""ppo, rloo and grpo learn a toy reward on the tiny from-config model, through ``tunesmith.train.api.train``.

The reward is a grader file (a ``python`` grader, run in its sandbox as every grader is): answers of a target
length, 24 characters, score ``1 - |len - 24| / 24`` (0 for an empty answer). The tiny model's greedy answer
to every prompt is empty (its end-of-turn token is the most likely first token), so the held-out (probe)
reward starts at 0; each method must raise it by at least ``MARGIN`` within ``STEPS`` steps of 16 sampled
answers. Seeded: the same run every time on one machine. (The mean reward of each step's samples is logged
but not asserted on: with 16 answers a step it is too noisy to order two 3-step means reliably.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.train.api import train

pytestmark = pytest.mark.integration

STEPS = 16
MARGIN = 0.25  # held-out greedy reward, after minus before
TARGET_LENGTH = (
    "def grade(sample, item):\n    return max(0.0, 1 - abs(len(sample['output_text']) - 24) / 24)\n"
)
TOPICS = ["billing", "login", "invoice", "refund", "password", "crash", "error", "account", "order",
          "shipping", "upgrade", "email"]  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rl")
    rows = [{"messages": [{"role": "user", "content": f"Question {i} about {t}: answer yes or no."}]}
            for i, t in enumerate(TOPICS * 2)]  # fmt: skip
    (d / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "length.json").write_text(json.dumps({"type": "python", "name": "length", "source": TARGET_LENGTH}))
    return d


def _train(toy: Path, model: Path, method: str, *extra: str):  # noqa: ANN202
    events: list[dict] = []
    cfg = load_config(
        None,
        [
            f"model.name={model}",
            f"train.prompts={toy / 'prompts.jsonl'}",
            f"train.grader={toy / 'length.json'}",
            f"train.method={method}",
            f"train.max_steps={STEPS}",
            "train.batch_size=16",
            "train.lr=2e-2",
            "train.beta=0.02",
            "train.warmup_ratio=0",
            "train.max_completion_length=8",
            "train.seed=1",
            "lora.r=8",
            f"train.output_dir={toy / 'runs'}",
            f"train.run_name={method}",
            *extra,
        ],
    )
    return train(cfg, on_progress=events.append), events


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _learned(result) -> None:  # noqa: ANN001
    s = result.summary
    assert result.status == "completed" and s.steps == STEPS
    assert s.extras.grader.endswith("length.json") and s.extras.reward_model is None
    assert s.extras.probe_reward_before == 0.0  # the empty greedy answers
    assert s.extras.probe_reward_after >= s.extras.probe_reward_before + MARGIN
    assert math.isfinite(s.extras.train_reward_first) and math.isfinite(s.extras.train_reward_last)
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()


def test_ppo_learns_a_target_length(toy: Path, toy_model_dir: Path) -> None:
    result, events = _train(toy, toy_model_dir, "ppo", "train.lam=1.0", "train.num_ppo_epochs=4")
    _learned(result)
    s = result.summary
    assert s.extras.algorithm == "ppo" and s.extras.beta == 0.02 and s.extras.kl_coef_last == 0.02  # fixed
    rows = _metrics(result.run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert {"reward", "kl", "kl_coef", "value_loss", "policy_loss", "clipfrac"} <= set(r)
        assert all(math.isfinite(r[k]) for k in ("loss", "reward", "kl", "value_loss"))
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # step 1 samples from the reference itself
    assert rows[-1]["kl"] > 0.1  # and the policy moved away from it
    assert s.extras.value_loss_last < s.extras.value_loss_first  # the critic learned
    assert (result.run_dir / "value_head.safetensors").exists()
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == STEPS and all("reward" in e and "value_loss" in e for e in steps)


def test_ppo_adaptive_kl_moves_the_coefficient_toward_the_target(toy: Path, toy_model_dir: Path) -> None:
    result, _ = _train(toy, toy_model_dir, "ppo", "train.max_steps=3", "train.run_name=ppo-akl",
                       "train.kl_target=0.01", "train.kl_horizon=100")  # fmt: skip
    rows = _metrics(result.run_dir)
    # Ziegler et al. 2019: e = clip(KL / target - 1, -0.2, 0.2), beta *= 1 + e * n / horizon (n = 16 answers);
    # step 1 samples from the reference (KL 0: beta falls), then KL is far above 0.01 (beta rises)
    expected = 0.02
    for r in rows:
        assert r["kl_coef"] == pytest.approx(expected, rel=1e-4)  # logged to 6 decimals
        expected *= 1 + min(max(r["kl"] / 0.01 - 1, -0.2), 0.2) * 16 / 100
    assert rows[1]["kl_coef"] == pytest.approx(0.02 * 0.968) and rows[2]["kl_coef"] > rows[1]["kl_coef"]
    assert result.summary.extras.kl_coef_last == pytest.approx(expected)


def test_rloo_learns_a_target_length(toy: Path, toy_model_dir: Path) -> None:
    result, _ = _train(toy, toy_model_dir, "rloo", "train.num_generations=4")
    _learned(result)
    assert result.summary.extras.algorithm == "rloo" and result.summary.extras.num_generations == 4


def test_grpo_learns_a_target_length(toy: Path, toy_model_dir: Path) -> None:
    result, events = _train(toy, toy_model_dir, "grpo", "train.num_generations=4")
    _learned(result)
    assert result.summary.method == "grpo" and result.summary.extras.algorithm == "grpo"
    assert all("reward" in r for r in _metrics(result.run_dir))
    assert any(e.get("reward") is not None for e in events if e["event"] == "step")


def test_ppo_from_an_sft_adapter_uses_it_as_the_reference(toy: Path, toy_model_dir: Path) -> None:
    """With train.init_from an adapter run, the reference is that adapter (InstructGPT: the SFT model), so
    step 1, which samples from the unchanged policy, has KL 0 although the policy is not the base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models.load import load_causal_lm

    sft = toy / "sft-run"
    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(str(toy_model_dir)), LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # an adapter that changes the model (a fresh one is the identity)
    model.save_pretrained(sft / "adapter")
    result, _ = _train(toy, toy_model_dir, "ppo", "train.max_steps=2", "train.run_name=ppo-sft",
                       f"train.init_from={sft}", "train.max_completion_length=6")  # fmt: skip
    rows = _metrics(result.run_dir)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4) and rows[1]["kl"] != 0.0
    saved = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    # the SFT adapter trained on; its frozen "ref" copy is not saved
    assert saved["r"] == 4 and not (result.run_dir / "adapter" / "ref").exists()
    assert result.summary.extras.init_from == str(sft)
