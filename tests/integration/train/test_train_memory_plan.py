"""The memory plan end to end on the tiny model: two budgets give different micro-batches and the same
losses; an injected out-of-memory error is retried with a halved micro-batch and changes nothing; the plan
and the measured peak are in the run's summary; a budget that cannot hold one example is refused before
the data is read."""

from __future__ import annotations

import json

import pytest
import torch
from train_toy import toy_chat

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.models.params import load_architecture
from tunesmith.train import loop as loop_mod
from tunesmith.train import plan as P
from tunesmith.train.api import train

pytestmark = pytest.mark.integration


def _cfg(tmp_path, model_dir, name: str, *overrides: str):
    data = toy_chat(tmp_path / "train.jsonl", repeat=4)  # 32 chats, ~6 held out
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            "train.lr=3e-2",
            "train.max_steps=6",
            "train.batch_size=12",
            "lora.r=8",
            "data.max_seq_len=48",  # the budget check before the data assumes examples this long
            f"train.output_dir={tmp_path / 'runs'}",
            f"train.run_name={name}",
            *overrides,
        ],
    )


def _losses(run_dir) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _budget_for(model_dir, tokens: int) -> float:
    # the budget whose plan gives micro-batches of about ``tokens`` tokens (fixed part + activations)
    cfg = load_config(None, [f"model.name={model_dir}"])
    fixed, per_token, _ = P.memory_parts(cfg, load_architecture(str(model_dir)), "cpu", False)
    return (fixed + per_token * tokens) / 1e9


def test_two_budgets_same_losses(tmp_path, toy_model_dir):
    small = _budget_for(toy_model_dir, 40)  # one or two chats per micro-batch
    events: list[dict] = []
    tight = train(
        _cfg(tmp_path, toy_model_dir, "tight", f"train.memory_budget_gb={small:.6f}"),
        on_progress=events.append,
    )
    roomy = train(_cfg(tmp_path, toy_model_dir, "roomy", "train.memory_budget_gb=16"))
    plan_t, plan_r = tight.summary.extras.plan, roomy.summary.extras.plan
    assert plan_t.memory.micro_tokens < plan_r.memory.micro_tokens
    assert plan_t.memory.micro_tokens_reason in ("budget", "measured peak")
    assert plan_t.examples_per_step == plan_r.examples_per_step == 12  # the optimizer step is the same
    a, b = _losses(tight.run_dir), _losses(roomy.run_dir)
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=1e-4)
    assert tight.summary.final_val_loss == pytest.approx(roomy.summary.final_val_loss, rel=1e-4)
    # printed (the plan event) and recorded (summary.json), measured peak included
    (plan_event,) = [e for e in events if e["event"] == "plan"]
    assert plan_event["memory"]["micro_tokens"] > 0 and plan_event["rule"]["batch_size"].startswith("config")
    saved = json.loads((tight.run_dir / "summary.json").read_text())
    mem = saved["extras"]["plan"]["memory"]
    assert mem["measured_peak_gb"] > 0.1 and mem["budget_source"].startswith("train.memory_budget_gb")


def test_injected_out_of_memory_is_retried_with_half_the_micro_batch(tmp_path, toy_model_dir, monkeypatch):
    real = loop_mod.accumulate_gradients
    fired: list[int] = []

    def flaky(engine, micro, *rest):  # noqa: ANN001, ANN002, ANN202
        if not fired and len(micro) == 1:
            real(engine, micro, *rest)  # partial gradients that the retry must drop
            fired.append(micro[0].n_tokens)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (injected)")
        return real(engine, micro, *rest)

    clean = train(_cfg(tmp_path, toy_model_dir, "clean", "train.memory_budget_gb=16"))
    monkeypatch.setattr(loop_mod, "accumulate_gradients", flaky)
    events: list[dict] = []
    hit = train(_cfg(tmp_path, toy_model_dir, "oom", "train.memory_budget_gb=16"), on_progress=events.append)
    assert fired, "the injected error never fired"
    (oom,) = [e for e in events if e["event"] == "oom"]
    assert oom["micro_tokens"] == oom["micro_tokens_before"] // 2
    assert hit.summary.extras.plan.memory.oom_retries == 1
    assert _losses(hit.run_dir) == pytest.approx(_losses(clean.run_dir), rel=1e-4)


def test_budget_that_cannot_hold_one_example_is_refused_before_reading_data(tmp_path, toy_model_dir):
    cfg = _cfg(tmp_path, toy_model_dir, "refused", "train.memory_budget_gb=0.05")
    cfg.data.train = tmp_path / "does-not-exist.jsonl"  # reading it would fail with another error
    with pytest.raises(TunesmithError) as exc:
        train(cfg)
    assert "cannot hold one example" in exc.value.message and "Settings that fit" in exc.value.hint
    assert not (tmp_path / "runs" / "refused").exists()


def test_resume_with_another_budget_continues_the_same_steps(tmp_path, toy_model_dir):
    straight = train(_cfg(tmp_path, toy_model_dir, "straight", "train.memory_budget_gb=16"))
    stopped_cfg = _cfg(tmp_path, toy_model_dir, "moved", "train.memory_budget_gb=16")
    seen: list[int] = []
    first = train(
        stopped_cfg,
        on_progress=lambda e: seen.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: len(seen) >= 3,
    )
    assert first.summary.status == "stopped" and first.summary.steps == 3
    small = _budget_for(toy_model_dir, 40)  # "another machine": a smaller budget, smaller micro-batches
    moved = _cfg(tmp_path, toy_model_dir, "moved", f"train.memory_budget_gb={small:.6f}")
    resumed = train(moved, resume=first.run_dir)
    assert resumed.summary.steps == 6
    assert resumed.summary.extras.plan.memory.micro_tokens < straight.summary.extras.plan.memory.micro_tokens
    assert _losses(resumed.run_dir)[-3:] == pytest.approx(_losses(straight.run_dir)[-3:], rel=1e-4)
