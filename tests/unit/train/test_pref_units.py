"""Preference plumbing without weights: loss types, TRL arguments (CPU fp32), prompts, splits, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.models.scoring import preference_accuracy
from tunesmith.train.dpo import check_loss_type
from tunesmith.train.rl_common import load_prompts, prompts_path, reward_run
from tunesmith.train.pref_common import first_last, load_pairs, trl_args

pytestmark = pytest.mark.unit


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_loss_type_accepts_trl_losses_and_combinations() -> None:
    assert check_loss_type("sigmoid") == ["sigmoid"]
    assert check_loss_type("sigmoid, sft") == ["sigmoid", "sft"]
    with pytest.raises(TunesmithError) as info:
        check_loss_type("sigmod")
    assert "train.loss_type 'sigmod'" in info.value.message and "sigmoid" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["DPOConfig", "RewardConfig", "RLOOConfig"])
def test_trl_args_are_fp32_without_checkpointing_on_cpu(tmp_path: Path, name: str) -> None:
    import trl

    cfg = load_config(
        None,
        ["train.lr=3e-4", "train.max_steps=7", "train.batch_size=4", "train.grad_accum=2", "train.seed=5"],
    )
    extra = {"num_generations": 2} if name == "RLOOConfig" else {}
    args = trl_args(getattr(trl, name), cfg, tmp_path / "trl", **extra)
    # TRL's own defaults are the GPU recipe (bf16 + checkpointing): on a CPU they do not even construct
    with pytest.raises(ValueError, match="bf16"):
        getattr(trl, name)(output_dir=str(tmp_path / "d"), **extra)
    assert args.bf16 is False and args.fp16 is False and args.gradient_checkpointing is False
    assert args.use_cpu is True and args.report_to == [] and args.save_strategy == "no"
    assert (
        args.learning_rate,
        args.max_steps,
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        args.seed,
    ) == (3e-4, 7, 4, 2, 5)


def test_prompts_accept_three_shapes_and_drop_a_trailing_answer(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Tell a joke"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"prompt": "Q", "chosen": "A", "rejected": "B"},
    ])  # fmt: skip
    prompts = load_prompts(path)
    assert prompts == [
        [{"role": "user", "content": "Tell a joke"}],
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Q"}],
    ]


def test_bad_prompt_lines_are_all_reported_with_numbers(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [
        {"prompt": "ok"},
        "{not json",
        {"question": "where is the prompt?"},
        {"messages": [{"role": "system", "content": "Be brief"}]},
        {"prompt": "ok too"},
        {"prompt": ""},
    ])  # fmt: skip
    with pytest.raises(TunesmithError) as info:
        load_prompts(path)
    msg = info.value.message
    assert "4 bad prompt line(s)" in msg
    assert "line 2: Line 2 is not valid JSON" in msg
    assert "line 3: Line 3: no 'prompt' or 'messages' field (fields: question)" in msg
    assert "line 4: Line 4: the prompt must end with a user (or tool) turn" in msg
    assert "line 6: Line 6: 'prompt' is empty" in msg


def test_pairs_split_is_seeded_and_leaves_both_sides(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(10)]
    path = _jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = load_config(None, [f"data.train={path}", "data.holdout_fraction=0.3", "train.method=dpo"])
    a, b = load_pairs(cfg), load_pairs(cfg)
    assert (len(a.train), len(a.holdout)) == (7, 3) and a == b
    assert {p["prompt"][0]["content"] for p in a.train} | {p["prompt"][0]["content"] for p in a.holdout} == {
        f"q{i}" for i in range(10)
    }
    one = _jsonl(tmp_path / "one.jsonl", rows[:1])
    with pytest.raises(TunesmithError, match="too few to split off a hold-out"):
        load_pairs(load_config(None, [f"data.train={one}", "train.method=dpo"]))


def test_chat_data_is_refused_for_preference_methods(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "chat.jsonl",
        [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}],
    )
    with pytest.raises(TunesmithError) as info:
        load_pairs(load_config(None, [f"data.train={path}", "train.method=dpo"]))
    assert "holds chat data, but preference methods train on pairs" in info.value.message
    assert "method: sft" in (info.value.hint or "")


def test_ppo_config_refusals(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="method: ppo needs exactly one reward: train.reward_model"):
        load_config(None, ["train.method=ppo"])
    with pytest.raises(TunesmithError, match="num_generations"):
        load_config(None, ["train.method=rloo", f"train.reward_model={tmp_path}", "train.num_generations=1"])
    cfg = load_config(None, ["train.method=ppo", f"train.reward_model={tmp_path / 'missing'}"])
    with pytest.raises(TunesmithError, match="needs prompts"):
        prompts_path(cfg)
    with pytest.raises(TunesmithError, match="Train a reward model first"):
        reward_run(cfg)


def test_score_refuses_a_run_that_is_not_a_reward_model(tmp_path: Path) -> None:
    from tunesmith.models.scoring import load_reward_scorer

    with pytest.raises(TunesmithError, match="does not exist"):
        load_reward_scorer(tmp_path / "nope")
    (tmp_path / "summary.json").write_text(json.dumps({"method": "dpo"}))
    with pytest.raises(TunesmithError, match="method: dpo run, not a reward model"):
        load_reward_scorer(tmp_path)


def test_accuracy_counts_ties_as_misses_and_curve_ends_average() -> None:
    assert preference_accuracy([1.0, 0.0, -1.0, 2.0]) == 0.5
    assert first_last([4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0]) == (3.0, 0.0)
