"""`tunesmith estimate` prices the levers: per GPU, the settings that make a run fit and the time each
costs (advisor/levers.py), checked against published figures."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunesmith.advisor.estimate import Workload, estimate
from tunesmith.advisor.prices import load_prices
from tunesmith.cli.main import app
from tunesmith.models.memory import Setup
from tunesmith.models.params import load_architecture

pytestmark = pytest.mark.unit

PRICES = load_prices()
W = Workload(examples=1000, avg_tokens=512, max_tokens=1024, epochs=1, avg_output_tokens=128, source="test")


def _est(model: str, method: str, seq: int = 1024, batch: int = 1, ckpt: bool = False):
    return estimate(load_architecture(model), Setup(method, batch, seq, ckpt), W, PRICES)


def _advice(est, gpu: str):
    return next(a for a in est.fit_advice if a.gpu == gpu)


def test_full_7b_is_16_bytes_per_parameter_plus_activations():
    est = _est("llama-2-7b", "full")
    m = est.memory
    per_param = (m.weights + m.gradients + m.optimizer) * 1e9 / est.params_total
    assert per_param == pytest.approx(16, rel=0.01)  # bf16 weights + grads, fp32 master + Adam m, v
    assert m.total == pytest.approx(16 * est.params_total / 1e9 + m.activations, rel=0.01)
    assert m.activations > 1  # GB at 1,024 tokens, on top of the 16 bytes/param
    # 108 GB does not fit an 80 GB GPU as given; the 8-bit optimizer is what makes it fit (QLoRA/8-bit Adam)
    h100 = _advice(est, "H100-80GB")
    assert not h100.fits_as_given and h100.fits and h100.memory_gb <= 80
    assert [s.lever for s in h100.levers] == ["optimizer_8bit"]


def test_qlora_70b_fits_48gb_with_checkpointing():
    # QLoRA paper: a 65B model fine-tuned on one 48 GB GPU (4-bit base, checkpointing, paged optimizer)
    est = _est("llama-2-70b", "qlora")
    a = _advice(est, "A6000-48GB")
    assert not a.fits_as_given  # 1,024-token activations without checkpointing: ~30 GB
    assert a.fits and a.memory_gb <= 48
    ckpt = next(s for s in a.levers if s.lever == "gradient_checkpointing")
    assert ckpt.setting == "train.gradient_checkpointing: true"
    assert 1.3 < ckpt.time_factor < 1.6  # one more forward pass: (4N + 2N) / 4N for adapters
    assert json.loads(json.dumps(est.to_json()))["fits_with"]["A6000-48GB"]["fits"] is True


def test_lora_7b_fits_24gb():
    est = _est("llama-2-7b", "lora")
    assert est.to_json()["fits"]["RTX4090-24GB"] is True
    assert _advice(est, "L4-24GB").fits_as_given and _advice(est, "L4-24GB").levers == []


def test_lora_70b_on_48gb_needs_the_4bit_base_and_pays_its_slowdown():
    est = _est("llama-2-70b", "lora")
    a = _advice(est, "A6000-48GB")
    assert a.fits and a.levers[-1].lever == "base_4bit"
    assert a.levers[-1].time_factor == pytest.approx(
        a.levers[-2].time_factor * PRICES.assume("qlora_slowdown"), rel=1e-6
    )


def test_bigger_micro_batch_is_split_first_and_shorter_sequences_come_last():
    est = _est("llama-2-7b", "lora", seq=2048, batch=8)
    a = _advice(est, "RTX4090-24GB")
    assert a.levers[0].lever == "micro_batch" and a.levers[0].time_factor == 1.0
    full70 = _advice(_est("llama-2-70b", "full"), "H100-80GB")
    assert not full70.fits and full70.levers[-1].lever == "seq_len"  # nothing makes it fit


def test_cli_json_carries_the_levers():
    res = CliRunner().invoke(
        app,
        ["estimate", "--model", "70b", "--method", "qlora", "--examples", "100", "--avg-tokens", "512",
         "--seq-len", "1024", "--gpu", "A6000-48GB", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    steps = out["fits_with"]["A6000-48GB"]["with"]
    assert out["fits"]["A6000-48GB"] is False and out["fits_with"]["A6000-48GB"]["fits"] is True
    assert {"lever", "setting", "memory_gb", "hours", "time_factor"} <= set(steps[0])
    text = CliRunner().invoke(
        app,
        ["estimate", "--model", "70b", "--method", "qlora", "--examples", "100", "--avg-tokens", "512",
         "--seq-len", "1024", "--gpu", "A6000-48GB"],
    )  # fmt: skip
    assert "Settings that make it fit" in text.output and "gradient_checkpointing" in text.output
