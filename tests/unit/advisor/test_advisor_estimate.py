"""The estimate against published figures, exact parameter counts, token counting and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.advisor.estimate import Workload, estimate
from tunesmith.advisor.prices import load_prices
from tunesmith.cli.main import app
from tunesmith.errors import TunesmithError
from tunesmith.models.memory import Setup
from tunesmith.models.params import BUILTIN, load_architecture

pytestmark = pytest.mark.unit

PRICES = load_prices()
W = Workload(examples=1000, avg_tokens=512, max_tokens=1024, epochs=3, avg_output_tokens=128, source="test")


def _est(model: str, method: str, seq: int = 1024, ckpt: bool = False, **kw):
    return estimate(
        load_architecture(model),
        Setup(method, batch_size=1, seq_len=seq, gradient_checkpointing=ckpt, **kw),
        W,
        PRICES,
    )


def _gpu(est, name):
    return next(g for g in est.gpus if g.name == name)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_param_count_matches_published_count(name):
    assert load_architecture(name).total == BUILTIN[name]["published"]


def test_param_count_from_config_matches_the_saved_weights(tiny_model_dir):
    from tunesmith.models.load import describe_model

    arch = load_architecture(str(tiny_model_dir / "config.json"))
    assert arch.total == describe_model(str(tiny_model_dir))["parameters"]
    assert arch.embedding == arch.vocab * arch.hidden and arch.non_embedding == arch.total - arch.embedding


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapter_param_count_matches_peft(tiny_model_dir, method):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules="all-linear", use_dora=method == "dora")
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert load_architecture(str(tiny_model_dir)).lora_params(4, dora=method == "dora") == trainable


def test_full_finetune_7b_mixed_precision_adam_is_16_bytes_per_param():
    est = _est("7b", "full")
    m = est.memory
    per_param = (m.weights + m.gradients + m.optimizer) * 1e9 / est.params_total
    assert per_param == pytest.approx(16.0, abs=0.01)  # ZeRO paper: 2 + 2 + 12
    assert 105 < m.weights + m.gradients + m.optimizer < 110  # 6.74B params x 16 B = 107.8 GB
    assert not _gpu(est, "H100-80GB").fits  # needs sharding or offload


def test_qlora_70b_fits_a_48gb_gpu_but_not_24gb():
    est = _est("70b", "qlora", ckpt=True)
    assert est.params_total > 68e9
    assert _gpu(est, "A6000-48GB").fits and _gpu(est, "A6000-48GB").headroom_gb > 0
    assert not _gpu(est, "RTX4090-24GB").fits and not _gpu(est, "A100-40GB").fits
    assert est.memory.weights < 0.6 * est.params_total / 1e9  # ~4.1 bits per quantized weight


def test_lora_7b_fits_a_24gb_gpu_and_full_does_not():
    lora = _est("7b", "lora")
    assert _gpu(lora, "RTX4090-24GB").fits and _gpu(lora, "L4-24GB").fits
    assert lora.params_trainable < 0.01 * lora.params_total
    assert not _gpu(_est("7b", "full"), "RTX4090-24GB").fits


def test_gradient_checkpointing_trades_memory_for_flops():
    plain, ckpt = _est("8b", "lora", seq=2048), _est("8b", "lora", seq=2048, ckpt=True)
    assert ckpt.memory.activations < plain.memory.activations / 3  # the logits stay: 2048 x 128k vocab
    assert ckpt.flops == pytest.approx(plain.flops * 1.5, rel=0.05)  # 4N -> 6N
    assert not _gpu(plain, "RTX4090-24GB").fits and _gpu(plain, "RTX4090-24GB").fits_with_checkpointing


def test_flops_follow_6nd_for_full_and_4nd_for_adapters():
    arch = load_architecture("7b")
    full, lora = _est("7b", "full"), _est("7b", "lora")
    six_nd = 6 * arch.active_matmul * W.tokens
    assert six_nd <= full.flops <= six_nd * 1.05  # attention adds a few percent at 512 tokens
    assert lora.flops / full.flops == pytest.approx(2 / 3, rel=0.03)
    h100 = _gpu(full, "H100-80GB")
    assert h100.hours == pytest.approx(full.flops / (989e12 * 0.4) / 3600)
    assert h100.cost_usd == pytest.approx(h100.hours * PRICES.gpus["H100-80GB"].usd_per_hour)


def test_together_price_tier_follows_model_size():
    tok = W.tokens / 1e6
    assert _est("7b", "lora").api_costs["together/lora"] == pytest.approx(tok * 0.48)
    assert _est("70b", "qlora").api_costs["together/lora"] == pytest.approx(tok * 2.9)
    assert _est("7b", "full").api_costs["together/full"] == pytest.approx(tok * 0.54)
    assert _est("7b", "lora").api_costs["openai/gpt-4o-mini"] == pytest.approx(tok * 3.0)


def test_breakeven_volume_is_where_the_gpu_bill_equals_the_api_bill():
    sv = _est("8b", "lora").serving
    assert sv is not None
    assert sv.breakeven_requests_per_month * sv.frontier_usd_per_request == pytest.approx(
        sv.gpu_usd_per_month
    )
    assert sv.selfhost_usd_per_request < sv.frontier_usd_per_request


def test_every_price_has_a_source_and_a_date():
    raw = json.loads((Path(__file__).parents[3] / "src/tunesmith/advisor/prices.json").read_text())
    assert raw["as_of"]
    for section in ("gpus", "api_finetuning", "frontier_apis", "assumptions"):
        for name, entry in raw[section].items():
            assert entry["source"].strip(), name
            if section != "assumptions":
                assert "as of" in entry["source"] or "20" in entry["source"], name


def test_price_override_file_replaces_only_what_it_names(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "gpus:\n  H100-80GB:\n    usd_per_hour: 10.0\n  MY-GPU:\n    memory_gb: 96\n    bf16_tflops: 500\n"
        "    bandwidth_gbps: 4000\n    usd_per_hour: 1.0\n    source: our own cluster, 2026\n"
    )
    sheet = load_prices(f)
    assert sheet.gpus["H100-80GB"].usd_per_hour == 10.0 and sheet.gpus["H100-80GB"].bf16_tflops == 989
    assert "MY-GPU" in sheet.gpus and "A100-80GB" in sheet.gpus
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  H100-80GB:\n    usd_per_hour: -1\n")
    with pytest.raises(TunesmithError, match=r"gpus\.H100-80GB\.usd_per_hour"):
        load_prices(bad)


def test_token_counts_use_the_chat_template(tiny_model_dir, tmp_path):
    from tunesmith.advisor.tokens import measure_workload
    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.load import load_tokenizer

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} " * (i + 1)},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(5)
    ]
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    w = measure_workload(f, str(tiny_model_dir), epochs=2)
    tok = load_tokenizer(str(tiny_model_dir))
    lengths = [tokenize_chat(tok, r["messages"]).n_tokens_full for r in rows]
    assert w.examples == 5 and w.max_tokens == max(lengths)
    assert w.avg_tokens == pytest.approx(sum(lengths) / 5) and w.tokens == pytest.approx(2 * sum(lengths))
    assert "approximate" not in w.source


runner = CliRunner()


def test_cli_json_has_the_exact_shape():
    res = runner.invoke(
        app,
        [
            "estimate",
            "--model",
            "7b",
            "--method",
            "qlora",
            "--examples",
            "2000",
            "--avg-tokens",
            "350",
            "--epochs",
            "2",
            "--gpu",
            "A6000-48GB",
            "--gpu",
            "H100",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"params", "memory_gb", "fits", "fits_with", "flops", "hours", "cost_usd"}
    assert set(out["fits_with"]) == {"A6000-48GB", "H100-80GB"}  # the levers per GPU (test_advisor_levers.py)
    assert set(out["params"]) == {"total", "trainable"}
    assert set(out["memory_gb"]) == {"weights", "gradients", "optimizer", "activations", "total"}
    assert set(out["fits"]) == set(out["hours"]) == {"A6000-48GB", "H100-80GB"}
    assert {"A6000-48GB", "H100-80GB", "together/lora", "openai/gpt-4o-mini"} <= set(out["cost_usd"])
    assert out["memory_gb"]["total"] == pytest.approx(
        sum(v for k, v in out["memory_gb"].items() if k != "total"), abs=0.01
    )


def test_cli_table_names_formula_and_breakeven(tmp_path):
    res = runner.invoke(
        app, ["estimate", "--model", "8b", "--method", "lora", "--examples", "500", "--avg-tokens", "300"]
    )
    assert res.exit_code == 0, res.output
    for needle in ("Memory", "optimizer", "4N + 6·L·s·q + 6P", "Break-even", "together/lora", "RTX4090-24GB"):
        assert needle in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "7b", "--method", "prefix", "--examples", "5", "--avg-tokens", "9"],
            "not one of full, lora",
        ),
        (["--model", "7b"], "Give --data FILE"),
        (["--model", "nosuch-model", "--examples", "5", "--avg-tokens", "9"], "Unknown model"),
        (["--model", "7b", "--examples", "5", "--avg-tokens", "9", "--gpu", "TPUv9"], "Unknown GPU"),
        (["--model", "7b", "--examples", "5", "--avg-tokens", "9", "--probe"], "--probe trains on your data"),
    ],
)
def test_cli_bad_input_is_a_clear_error(args, message):
    res = runner.invoke(app, ["estimate", *args])
    assert res.exit_code in (1, 2)  # a TunesmithError (1) or a UsageError (2), never a traceback
    assert message in res.output and "Traceback" not in res.output
