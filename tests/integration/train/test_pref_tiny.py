"""dpo, reward, rloo and ppo end to end on the tiny from-config model, through ``tunesmith.train.api.train``.

Each run (dpo and reward on tunesmith's loop, rloo on TRL's trainer, ppo on tunesmith's PPO) is trained on a learnable toy task (always prefer "yes" to "no"): losses are finite and
move the right way, hold-out metrics improve, and the saved artifacts reload to the same numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pref_toy import write_jsonl, yes_no_pairs

from tunesmith.config import ProjectConfig, load_config
from tunesmith.train.api import train

pytestmark = pytest.mark.integration


def _cfg(tmp: Path, method: str, *overrides: str) -> ProjectConfig:
    return load_config(
        None,
        [
            "model.name=tiny",
            f"data.train={tmp / 'pairs.jsonl'}",
            "data.max_seq_len=64",
            f"train.method={method}",
            "train.lr=5e-3",
            "train.max_steps=6",
            "train.batch_size=4",
            "train.warmup_ratio=0",
            "lora.r=8",
            f"train.output_dir={tmp / 'runs'}",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pref")
    write_jsonl(d / "pairs.jsonl", yes_no_pairs(16))
    return d


@pytest.fixture(scope="module")
def reward_run(tmp: Path):  # noqa: ANN201
    return train(_cfg(tmp, "reward", "train.run_name=reward", "train.max_steps=8"))


@pytest.fixture(scope="module")
def dpo_run(tmp: Path):  # noqa: ANN201
    events: list[dict] = []
    cfg = _cfg(tmp, "dpo", "train.run_name=dpo", "train.beta=0.1", "train.loss_type=sigmoid")
    return cfg, train(cfg, on_progress=events.append), events


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dpo_lora_learns_and_reloads(dpo_run) -> None:  # noqa: ANN001
    from tunesmith.models.inference import load_for_inference
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.models.scoring import pair_logps
    from tunesmith.train.pref_common import load_pairs

    cfg, result, events = dpo_run
    s = result.summary
    assert result.status == "completed" and s.steps == 6
    rows = [r for r in _metrics(result.run_dir) if "loss" in r]  # (hold-out rows carry val_loss)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert math.isfinite(s.final_train_loss) and s.final_train_loss < s.first_train_loss - 0.02
    assert s.extras.holdout_preference_accuracy > s.extras.holdout_preference_accuracy_before
    assert s.extras.holdout_reward_margin > 0
    assert [e["event"] for e in events][:2] == ["plan", "start"]  # as sft: the run's plan, then the loop
    assert sum(e["event"] == "step" for e in events) == 6
    assert len(rows) == 6 and all("rewards/margins" in r for r in rows)
    assert not (result.run_dir / "trl").exists()  # the Trainer's scratch folder is cleaned up
    # reload: the saved adapter gives exactly the hold-out margin the run reported
    holdout = load_pairs(cfg).holdout
    model, tok = load_for_inference(None, result.run_dir)
    margins = [c - r for c, r in pair_logps(model, tok, holdout)]
    assert sum(margins) / len(margins) == pytest.approx(s.extras.holdout_logp_margin, abs=1e-4)
    # LoRA: the base weights are untouched (adapter disabled == a freshly loaded base)
    base_lp = [
        x
        for pair in pair_logps(load_causal_lm("tiny", dtype="float32"), load_tokenizer("tiny"), holdout)
        for x in pair
    ]
    with model.disable_adapter():
        assert [x for pair in pair_logps(model, tok, holdout) for x in pair] == pytest.approx(
            base_lp, abs=1e-5
        )
    assert json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert not (result.run_dir / "adapter" / "ref").exists()  # no reference adapter copy saved


@pytest.mark.parametrize("finetune", ["full", "qlora"])
def test_dpo_full_and_qlora(tmp: Path, finetune: str) -> None:
    from tunesmith.models.inference import load_for_inference

    result = train(
        _cfg(
            tmp,
            "dpo",
            f"train.run_name=dpo-{finetune}",
            f"train.finetune={finetune}",
            "train.max_steps=4",
            "train.loss_type=ipo",
        )
    )
    s = result.summary
    assert result.status == "completed" and s.extras.loss_type == "ipo"
    assert math.isfinite(s.final_train_loss) and s.final_train_loss < s.first_train_loss
    assert s.extras.holdout_logp_margin > s.extras.holdout_logp_margin_before
    folder = result.run_dir / ("model" if finetune == "full" else "adapter")
    assert folder.is_dir()
    model, _ = load_for_inference(None, result.run_dir)
    assert model is not None


def test_dpo_from_sft_run_uses_it_as_start_and_reference(tmp: Path) -> None:
    from tunesmith.models.inference import load_for_inference
    from tunesmith.models.scoring import pair_logps
    from tunesmith.train.pref_common import load_pairs

    chat = tmp / "chat.jsonl"
    chat.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Is {i} a number?"},
                        {"role": "assistant", "content": "no"},
                    ]
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    sft = train(load_config(None, ["model.name=tiny", f"data.train={chat}", "train.method=sft", "train.lr=3e-2", "train.max_steps=4",
                                   "train.batch_tokens=128", "lora.r=8", f"train.output_dir={tmp / 'runs'}", "train.run_name=sft"]))  # fmt: skip
    assert sft.status == "completed"
    cfg = _cfg(
        tmp, "dpo", "train.run_name=dpo-from-sft", f"train.init_from={sft.run_dir}", "train.max_steps=4"
    )
    result = train(cfg)
    s = result.summary
    holdout = load_pairs(cfg).holdout
    sft_model, tok = load_for_inference(None, sft.run_dir)
    sft_margin = [c - r for c, r in pair_logps(sft_model, tok, holdout)]
    # the "before" numbers are the SFT policy's, i.e. training started from it
    assert s.extras.init_from == str(sft.run_dir)
    assert s.extras.holdout_logp_margin_before == pytest.approx(sum(sft_margin) / len(sft_margin), abs=1e-4)
    assert s.extras.holdout_logp_margin > s.extras.holdout_logp_margin_before
    saved = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert saved["r"] == json.loads((sft.run_dir / "adapter" / "adapter_config.json").read_text())["r"]
    assert not (result.run_dir / "adapter" / "ref").exists()


def test_reward_model_learns_scores_and_reloads(tmp: Path, reward_run) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from tunesmith.cli.main import app
    from tunesmith.models.scoring import load_reward_scorer
    from tunesmith.train.pref_common import load_pairs

    s = reward_run.summary
    assert reward_run.status == "completed"
    assert math.isfinite(s.final_train_loss) and s.final_train_loss < s.first_train_loss
    assert s.extras.holdout_pairwise_accuracy > s.extras.holdout_pairwise_accuracy_before
    assert s.extras.holdout_pairwise_accuracy == 1.0 and s.extras.holdout_reward_margin > 0
    holdout = load_pairs(_cfg(tmp, "reward")).holdout
    scores = load_reward_scorer(reward_run.run_dir).pair_scores(holdout)
    assert sum(c - r for c, r in scores) / len(scores) == pytest.approx(
        s.extras.holdout_reward_margin, abs=1e-4
    )
    # tunesmith score RUN --data FILE: pairs and plain conversations
    out = tmp / "scores.jsonl"
    res = CliRunner().invoke(
        app, ["score", str(reward_run.run_dir), "--data", str(tmp / "pairs.jsonl"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "pairwise accuracy" in res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16 and all(r["correct"] for r in rows)
    chat = tmp / "answers.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "Is 3 a number?"}, {"role": "assistant", "content": "yes"}]}) + "\n"
                    + json.dumps({"messages": [{"role": "user", "content": "Is 3 a number?"}, {"role": "assistant", "content": "no"}]}) + "\n")  # fmt: skip
    res = CliRunner().invoke(app, ["score", str(reward_run.run_dir), "--data", str(chat), "--out", str(out)])
    assert res.exit_code == 0, res.output
    yes, no = (json.loads(line)["score"] for line in out.read_text().splitlines())
    assert yes > no


def test_score_refuses_a_policy_run(tmp: Path, dpo_run) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from tunesmith.cli.main import app

    dpo_dir = dpo_run[1].run_dir
    res = CliRunner().invoke(app, ["score", str(dpo_dir), "--data", str(tmp / "pairs.jsonl")])
    assert res.exit_code != 0
    assert "method: dpo run, not a reward model" in res.output


def test_rloo_raises_sampled_reward(tmp: Path, reward_run) -> None:  # noqa: ANN001
    from tunesmith.models.inference import load_for_inference

    result = train(_cfg(tmp, "rloo", "train.run_name=rloo", f"train.reward_model={reward_run.run_dir}", f"train.prompts={tmp / 'pairs.jsonl'}",
                        "train.lr=2e-2", "train.max_steps=12", "train.batch_size=8", "train.num_generations=4", "train.max_completion_length=4"))  # fmt: skip
    s = result.summary
    assert result.status == "completed" and s.extras.algorithm == "rloo" and s.steps == 12
    rows = _metrics(result.run_dir)
    assert all(math.isfinite(r["loss"]) and "reward" in r and "kl" in r for r in rows)
    # RLOO maximises the reward of its own samples: the mean sampled reward of the last steps beats the first
    # (12 steps: with the reward model trained on tunesmith's loop, 8 steps of 4-token samples were too noisy)
    assert s.extras.train_reward_last > s.extras.train_reward_first
    assert all(
        math.isfinite(g.reward_before) and math.isfinite(g.reward_after) for g in s.extras.probe_generations
    )
    fields = set(s.extras.probe_generations[0].model_dump()) if s.extras.probe_generations else set()
    assert {"before", "after", "reward_before", "reward_after"} <= fields
    model, _ = load_for_inference(None, result.run_dir)
    assert model is not None


def test_ppo_with_a_reward_model_logs_reward_kl_and_value_loss(tmp: Path, reward_run) -> None:  # noqa: ANN001
    """method: ppo scores its samples with a trained reward run (the grader path: test_rl_tiny.py)."""
    from tunesmith.models.inference import load_for_inference

    result = train(_cfg(tmp, "ppo", "train.run_name=ppo", f"train.reward_model={reward_run.run_dir}",
                        f"train.prompts={tmp / 'pairs.jsonl'}", "train.max_steps=3", "train.max_completion_length=4"))  # fmt: skip
    s = result.summary
    assert result.status == "completed" and s.steps == 3 and s.extras.algorithm == "ppo"
    assert s.extras.reward_model == str(reward_run.run_dir) and s.extras.grader is None
    rows = _metrics(result.run_dir)
    assert len(rows) == 3 and all(math.isfinite(r[k]) for r in rows for k in ("reward", "kl", "value_loss"))
    assert len({r["reward"] for r in rows}) > 1  # the reward model scores each step's own samples
    model, _ = load_for_inference(None, result.run_dir)
    assert model is not None


def test_eval_preference_report_compares_base_and_finetuned(tmp: Path, dpo_run, reward_run) -> None:  # noqa: ANN001
    from tunesmith.eval.preference import evaluate

    dpo_dir = dpo_run[1].run_dir
    out = tmp / "eval-dpo"
    report = evaluate(
        model=None, adapter=dpo_dir, data=tmp / "pairs.jsonl", out=out, n_generations=2, max_new_tokens=4
    )
    saved = json.loads((out / "report.json").read_text())
    assert saved["candidates"] == report["candidates"]
    base, tuned = (report["candidates"][k]["metrics"] for k in ("base", "finetuned"))
    assert base["reward_margin"] == 0.0  # the base is the reference: no implicit reward by definition
    assert tuned["preference_accuracy"] > base["preference_accuracy"] and tuned["reward_margin"] > 0
    assert len(report["generations"]) == 2 and {"base", "finetuned", "chosen"} <= set(
        report["generations"][0]
    )
    # the same through the CLI: tunesmith eval --model M --adapter RUN --data PAIRS --out DIR
    from typer.testing import CliRunner

    from tunesmith.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "tiny",
            "--adapter",
            str(dpo_dir),
            "--data",
            str(tmp / "pairs.jsonl"),
            "--out",
            str(tmp / "eval-cli"),
        ],
    )
    assert res.exit_code == 0, res.output
    cli = json.loads((tmp / "eval-cli" / "report.json").read_text())
    assert cli["task"] == "preference" and set(cli["candidates"]) == {"base", "finetuned"}
    assert (
        cli["candidates"]["finetuned"]["metrics"]["preference_accuracy"]
        == report["candidates"]["finetuned"]["metrics"]["preference_accuracy"]
    )
    # the reward run: the reward model against the base LM as a judge
    rep = evaluate(model=None, adapter=reward_run.run_dir, data=tmp / "pairs.jsonl", out=tmp / "eval-rm")
    assert rep["candidates"]["finetuned"]["metrics"]["preference_accuracy"] == 1.0
    assert rep["candidates"]["base"]["metrics"]["reward_margin"] is None
    # a policy with a reward model: generated-answer reward before vs after
    rep = evaluate(
        model=None,
        adapter=dpo_dir,
        data=tmp / "pairs.jsonl",
        reward_model=reward_run.run_dir,
        max_examples=4,
        max_new_tokens=4,
    )
    assert {"generated_reward"} <= set(rep["candidates"]["base"]["metrics"]) and "base_reward" in rep[
        "generations"
    ][0]
