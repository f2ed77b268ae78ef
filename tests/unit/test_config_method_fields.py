"""A config field the chosen method never reads is refused, naming the field and what applies instead
(config.IGNORED_BY_METHOD); the field at its default passes, so every run's config.resolved.yaml loads."""

from __future__ import annotations

from typing import get_args

import pytest

from tunesmith.config import IGNORED_BY_METHOD, Method, ProjectConfig, load_config, overrides_for
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.unit
RL_METHODS = ("ppo", "rloo", "grpo")  # need a reward (train.reward_model or train.grader)

# a valid value other than the default, per field of the table
SAMPLE = {
    "train.batch_tokens": "512",
    "train.memory_budget_gb": "4",
    "train.packing": "false",
    "train.eval_every": "5",
    "train.early_stopping_patience": "2",
    "train.save_every": "5",
    "train.keep_checkpoints": "3",
    "train.forgetting_probe": "true",
    "train.beta": "0.3",
    "train.loss_type": "ipo",
    "train.init_from": "runs/sft",
    "train.reward_model": "runs/rm",
    "train.prompts": "prompts.jsonl",
    "train.num_generations": "2",
    "train.max_completion_length": "32",
    "train.temperature": "0.7",
    "train.grader": "grader.json",
    "train.num_ppo_epochs": "3",
    "train.num_mini_batches": "2",
    "train.cliprange": "0.1",
    "train.cliprange_value": "0.5",
    "train.vf_coef": "0.5",
    "train.gamma": "0.99",
    "train.lam": "0.9",
    "train.kl_target": "6",
    "train.kl_horizon": "500",
    "train.grad_accum": "2",
    "train.gradient_checkpointing": "true",
    "data.train_on": "all",
    "data.text_field": "body",
    "data.label_field": "queue",
    "data.fields_field": "facts",
    "data.system_prompt": "You sort tickets.",
    "data.holdout": "holdout.jsonl",
    "data.holdout_fraction": "0.3",
}


def _base(method: str) -> list[str]:
    return [f"train.method={method}"] + (["train.reward_model=runs/rm"] if method in RL_METHODS else [])


def test_the_table_covers_every_method_and_names_real_fields() -> None:
    assert set(IGNORED_BY_METHOD) == set(get_args(Method))
    for method, fields in IGNORED_BY_METHOD.items():
        for name in fields:
            section, field = name.split(".")
            assert field in type(getattr(ProjectConfig(), section)).model_fields, (method, name)
            assert name in SAMPLE, name


@pytest.mark.parametrize("method", get_args(Method))
def test_each_field_the_method_ignores_is_refused_with_what_applies(method: str) -> None:
    for name, (why, instead) in IGNORED_BY_METHOD[method].items():
        with pytest.raises(TunesmithError) as exc:
            load_config(None, [*_base(method), f"{name}={SAMPLE[name]}"])
        msg = str(exc.value)
        assert f"{name} does nothing for method: {method} ({why})." in msg, msg
        assert instead in msg
        # written at its default it changes nothing, and loads (as every config.resolved.yaml does)
        section, field = name.split(".")
        raw = {"train": {"method": method, **({"reward_model": "runs/rm"} if method in RL_METHODS else {})}}
        value = getattr(getattr(ProjectConfig.model_validate(raw), section), field)
        raw.setdefault(section, {})[field] = value
        assert getattr(getattr(ProjectConfig.model_validate(raw), section), field) == value


def test_the_message_names_the_field_that_sets_the_batch() -> None:
    with pytest.raises(TunesmithError) as exc:
        load_config(None, ["train.method=dpo", "train.packing=false"])
    assert "train.packing does nothing for method: dpo" in str(exc.value)
    assert "pairs are always packed" in str(exc.value)
    # dpo runs on tunesmith's loop (train/pref_run.py): the memory plan's and checkpoints' fields load
    assert load_config(None, ["train.method=dpo", "train.batch_tokens=512"]).train.batch_tokens == 512
    assert load_config(None, ["train.method=reward", "train.save_every=5"]).train.save_every == 5
    # and the fields each method does read load: sft's batch settings, dpo's batch_size and beta
    assert load_config(None, ["train.batch_tokens=512", "train.batch_size=4"]).train.batch_tokens == 512
    assert load_config(None, ["train.method=dpo", "train.batch_size=4", "train.beta=0.2"]).train.beta == 0.2


def test_a_run_of_settings_for_every_method_keeps_what_each_reads() -> None:
    settings = ["train.save_every=4", "train.max_steps=3", "train.beta=0.2"]
    assert overrides_for("sft", settings) == ["train.save_every=4", "train.max_steps=3"]
    assert overrides_for("dpo", settings) == ["train.save_every=4", "train.max_steps=3", "train.beta=0.2"]


def test_a_ppo_config_with_rloos_samples_per_prompt_names_both_methods() -> None:
    """method: ppo ran TRL's RLOO before it was PPO: such a config sets num_generations, which only rloo and
    grpo read; the error names the rename (docs/rl.md "method: ppo used to run RLOO")."""
    with pytest.raises(TunesmithError) as exc:
        load_config(None, ["train.method=ppo", "train.reward_model=runs/rm", "train.num_generations=2"])
    msg = str(exc.value)
    assert "method: rloo" in msg and "method: ppo" in msg and "train.num_generations" in msg
    assert load_config(None, ["train.method=rloo", "train.reward_model=runs/rm", "train.num_generations=2"])


@pytest.mark.parametrize("method", RL_METHODS)
def test_rl_methods_need_exactly_one_reward(method: str) -> None:
    with pytest.raises(TunesmithError, match="exactly one reward"):
        load_config(None, [f"train.method={method}"])
    with pytest.raises(TunesmithError, match="not both"):
        load_config(None, [f"train.method={method}", "train.reward_model=rm", "train.grader=g.json"])
    assert load_config(None, [f"train.method={method}", "train.grader=g.json"]).train.grader is not None
