"""RunSummary: one shape for every method, one writer, one reader; summaries of older versions still load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.results.run import (
    DpoExtras,
    LoopExtras,
    RewardExtras,
    RunSummary,
    read_run_summary,
    run_summary_from_dict,
    write_run_summary,
)

pytestmark = pytest.mark.unit

# summary.json files as tunesmith wrote them before RunSummary (copied from runs of that version)
OLD_SFT = {
    "run_id": "20260101-000000-sft-lora", "base_model": "tiny", "method": "sft", "finetune": "lora",
    "steps": 8, "total_steps": 8, "epochs_completed": 2, "lr": 0.0002, "first_train_loss": 6.1,
    "final_train_loss": 4.2, "first_val_loss": 6.0, "final_val_loss": 4.5, "best_val_loss": 4.4,
    "best_step": 6, "stopped_early": False, "weights": "best (step 6)", "tokens_trained": 900,
    "tokens_seen": 1500, "train_examples": 16, "holdout_examples": 4, "skipped_lines": 0,
    "truncated_answers": 1, "task": "chat", "forgetting": {"before": 3.0, "after": 3.3, "increase": 0.1},
    "status": "completed", "wall_time_s": 12.5, "peak_memory_mb": 900.1, "allocator": "jemalloc",
}  # fmt: skip
OLD_DPO = {
    "run_id": "r-dpo", "base_model": "tiny", "method": "dpo", "finetune": "lora", "init_from": None,
    "beta": 0.1, "loss_type": "sigmoid", "train_pairs": 12, "holdout_pairs": 4, "steps": 6,
    "train_loss_first": 0.69, "train_loss_last": 0.41, "holdout_preference_accuracy_before": 0.5,
    "holdout_preference_accuracy": 0.75, "holdout_logp_margin_before": -0.1, "holdout_logp_margin": 0.3,
    "holdout_reward_margin": 0.04, "status": "completed", "wall_time_s": 3.0, "peak_memory_mb": 800.0,
}  # fmt: skip
OLD_REWARD = {
    "run_id": "r-rm", "base_model": "tiny", "method": "reward", "finetune": "lora", "train_pairs": 12,
    "holdout_pairs": 4, "steps": 6, "train_loss_first": 0.7, "train_loss_last": 0.5,
    "holdout_pairwise_accuracy_before": 0.5, "holdout_pairwise_accuracy": 1.0,
    "holdout_reward_margin_before": 0.0, "holdout_reward_margin": 0.8, "status": "completed",
}  # fmt: skip
OLD_PPO = {
    "run_id": "r-ppo", "base_model": "tiny", "method": "ppo", "finetune": "lora", "algorithm": "rloo",
    "reward_model": "runs/r-rm", "beta": 0.05, "num_generations": 2, "train_prompts": 10, "steps": 2,
    "train_reward_first": 0.1, "train_reward_last": 0.3, "kl_last": 0.01, "probe_reward_before": 0.0,
    "probe_reward_after": 0.2, "probe_generations": [
        {"prompt": "hi", "before": "a", "reward_before": 0.0, "after": "b", "reward_after": 0.2}
    ], "status": "completed",
}  # fmt: skip
OLD_FAILED = {"run_id": "r-bad", "method": "sft", "finetune": "lora", "base_model": "tiny",
              "error": "RuntimeError: boom", "status": "failed", "wall_time_s": 0.5}  # fmt: skip


def _write_old(tmp_path: Path, data: dict) -> Path:
    run = tmp_path / data["run_id"]
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(data))
    return run


def test_old_sft_summary_loads_into_the_new_shape(tmp_path: Path) -> None:
    s = read_run_summary(_write_old(tmp_path, OLD_SFT))
    assert (s.method, s.status, s.final_train_loss, s.best_val_loss, s.tokens_trained) == (
        "sft", "completed", 4.2, 4.4, 900,
    )  # fmt: skip
    assert isinstance(s.extras, LoopExtras)
    assert (s.extras.weights, s.extras.task, s.extras.forgetting.increase) == ("best (step 6)", "chat", 0.1)
    assert (s.allocator, s.peak_memory_mb) == ("jemalloc", 900.1)


def test_old_dpo_and_reward_summaries_get_their_final_loss(tmp_path: Path) -> None:
    dpo = read_run_summary(_write_old(tmp_path, OLD_DPO) / "summary.json")
    assert (dpo.first_train_loss, dpo.final_train_loss, dpo.train_examples, dpo.holdout_examples) == (
        0.69, 0.41, 12, 4,
    )  # fmt: skip
    assert isinstance(dpo.extras, DpoExtras) and dpo.extras.holdout_preference_accuracy == 0.75
    assert dpo.extras.beta == 0.1
    rm = read_run_summary(_write_old(tmp_path, OLD_REWARD))
    assert rm.final_train_loss == 0.5 and isinstance(rm.extras, RewardExtras)
    assert rm.extras.holdout_pairwise_accuracy == 1.0


def test_old_ppo_and_failed_summaries_load(tmp_path: Path) -> None:
    ppo = read_run_summary(_write_old(tmp_path, OLD_PPO))
    assert ppo.train_examples == 10 and ppo.extras.reward_model == "runs/r-rm"
    assert ppo.extras.probe_generations[0].after == "b"
    failed = read_run_summary(_write_old(tmp_path, OLD_FAILED))
    assert (failed.status, failed.error, failed.extras, failed.final_train_loss) == (
        "failed", "RuntimeError: boom", None, None,
    )  # fmt: skip


def test_write_then_read_gives_the_same_summary(tmp_path: Path) -> None:
    s = RunSummary(
        run_id="r1", method="dpo", status="stopped", steps=3, final_train_loss=0.5, best_train_loss=0.4,
        extras=DpoExtras(beta=0.2, holdout_preference_accuracy=0.5),
    )  # fmt: skip
    path = write_run_summary(tmp_path, s)
    assert path == tmp_path / "summary.json"
    assert read_run_summary(tmp_path) == s
    assert json.loads(path.read_text())["summary_version"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_a_diverged_loss_stays_nan_and_a_missing_one_stays_none(tmp_path: Path) -> None:
    s = RunSummary(run_id="r", method="reward", status="completed", final_train_loss=float("nan"))
    back = read_run_summary(write_run_summary(tmp_path, s))
    assert math.isnan(back.final_train_loss) and back.best_val_loss is None


def test_extras_of_another_method_are_refused() -> None:
    with pytest.raises(TunesmithError, match="extras"):
        run_summary_from_dict(
            {"summary_version": 1, "run_id": "r", "method": "sft", "status": "completed",
             "extras": {"method": "dpo"}},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"summary_version": 1, "run_id": "r", "method": "sft", "status": "x", "steps": "many"}', "steps"),
        ('{"run_id": "r", "method": "rlhf", "status": "completed"}', "method"),
    ],
)
def test_a_file_that_is_not_a_summary_is_a_clear_error(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "summary.json"
    f.write_text(text)
    with pytest.raises(TunesmithError, match=match) as err:
        read_run_summary(f)
    assert str(f) in err.value.message


def test_a_missing_summary_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="does not exist"):
        read_run_summary(tmp_path)
