"""Every finetune mode and both methods on the tiny model: the loss falls on a learnable toy task, the
trainable weights move, the base does not (adapters), and the saved artifacts reload to the same logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_toy import logits, toy_config

from tunesmith.train.adapters import build_trainable, trainable_state
from tunesmith.train.api import train

pytestmark = pytest.mark.integration

PROBE_IDS = [5, 17, 42, 99, 300, 7, 256]


def _frozen_state(model) -> dict[str, torch.Tensor]:  # noqa: ANN001
    # Compared as raw bytes: QLoRA stores packed 4-bit codes in float32 containers, where a bit pattern
    # can read as NaN (and NaN != NaN would report a change that did not happen).
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {
        n: p.detach().contiguous().view(torch.uint8).clone()
        for n, p in inner.state_dict().items()
        if "lora_" not in n
    }


def _reload(run_dir: Path, finetune: str, base_dir: Path):  # noqa: ANN202
    from peft import PeftModel

    from tunesmith.models.load import load_causal_lm

    if finetune == "full":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(run_dir / "model", dtype=torch.float32)
    base = load_causal_lm(
        base_dir, load_in_4bit=finetune == "qlora"
    )  # plain peft on the base it was trained on
    return PeftModel.from_pretrained(base, run_dir / "adapter")


@pytest.mark.parametrize("finetune", ["full", "lora", "qlora", "dora"])
def test_sft_every_finetune_mode(tmp_path: Path, toy_model_dir: Path, finetune: str) -> None:
    cfg = toy_config(tmp_path, toy_model_dir, finetune)
    initial = build_trainable(cfg)  # same seed: the exact starting point of the run
    init_trainable = {n: p.detach().clone() for n, p in trainable_state(initial).items()}
    init_frozen = _frozen_state(initial) if finetune != "full" else None
    del initial

    result = train(cfg)
    s = result.summary
    assert s.status == "completed" and s.steps == 12
    assert math.isfinite(s.final_train_loss) and math.isfinite(s.final_val_loss)
    assert s.final_val_loss < 0.6 * s.first_val_loss, s  # learned: hold-out loss fell by >40%
    losses = [
        json.loads(line)["loss"]
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])

    model = result.model
    now = trainable_state(model)
    assert set(now) == set(init_trainable)
    changed = sum(not torch.equal(now[n], init_trainable[n]) for n in now)
    assert changed == len(now), f"only {changed}/{len(now)} trainable tensors moved"
    if finetune != "full":
        assert all("lora_" in n for n in now)
        after = _frozen_state(model)
        assert after.keys() == init_frozen.keys()
        assert all(torch.equal(after[k], init_frozen[k]) for k in after), "a base weight changed"

    reloaded = _reload(result.run_dir, finetune, toy_model_dir)
    torch.testing.assert_close(logits(reloaded, PROBE_IDS), logits(model, PROBE_IDS), rtol=1e-5, atol=1e-5)
    saved = result.run_dir / ("model" if finetune == "full" else "adapter")
    assert (saved / "tokenizer_config.json").exists() and (saved / "chat_template.jinja").exists()
    for name in ("config.resolved.yaml", "metrics.jsonl", "summary.json"):
        assert (result.run_dir / name).exists()
    summary = json.loads((result.run_dir / "summary.json").read_text())
    for key in (
        "base_model",
        "method",
        "finetune",
        "final_train_loss",
        "best_val_loss",
        "tokens_trained",
        "wall_time_s",
        "peak_memory_mb",
    ):
        assert summary[key] is not None, key
    assert summary["tokens_trained"] > 0 and summary["peak_memory_mb"] > 50


def test_cpt_trains_on_every_token(tmp_path: Path, toy_model_dir: Path) -> None:
    cfg = toy_config(
        tmp_path, toy_model_dir, "lora", "data.max_seq_len=32", "train.forgetting_probe=true", method="cpt"
    )
    result = train(cfg)
    s = result.summary
    assert s.status == "completed" and s.extras.task == "text"
    assert s.final_train_loss < 0.8 * s.first_train_loss, s
    assert s.tokens_trained > 0.9 * s.tokens_seen  # every token but each window's first carries loss
    assert s.extras.forgetting is not None and s.extras.forgetting.before > 0
    reloaded = _reload(result.run_dir, "lora", toy_model_dir)
    torch.testing.assert_close(
        logits(reloaded, PROBE_IDS), logits(result.model, PROBE_IDS), rtol=1e-5, atol=1e-5
    )


def test_early_stopping_restores_the_best_weights(tmp_path: Path, toy_model_dir: Path) -> None:
    from safetensors.torch import load_file

    from tunesmith.train.checkpoints import best_checkpoint

    # a learning rate far too high for full fine-tuning: the hold-out loss gets worse after the first step
    cfg = toy_config(
        tmp_path,
        toy_model_dir,
        "full",
        "train.lr=0.3",
        "train.lr_scheduler=constant",
        "train.eval_every=1",
        "train.early_stopping_patience=2",
    )
    result = train(cfg)
    s = result.summary
    assert s.status == "early_stopped" and s.extras.stopped_early and s.steps < 12, s
    assert s.extras.weights == f"best (step {s.best_step})" and s.best_val_loss < s.final_val_loss
    best = best_checkpoint(result.run_dir / "checkpoints")
    assert best is not None and best.name == f"step-{s.best_step:08d}"
    saved = load_file(str(best / "trainable.safetensors"))
    now = trainable_state(result.model)
    assert all(torch.equal(now[k], saved[k]) for k in saved)  # the model (and model/ on disk) is the best one
    vals = [
        json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines() if "val_loss" in x
    ]
    assert min(v["val_loss"] for v in vals) == pytest.approx(s.best_val_loss)
