"""`tunesmith export RUN --format vllm` on real peft adapters of the tiny model: the folder, the serve command,
and the refusals (DoRA, a full fine-tune, a non-empty output folder)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.integration


def _adapter_run(tmp_path: Path, model_dir: Path, **lora) -> Path:
    """A run folder holding a real peft adapter (random, non-zero B) saved the way tunesmith saves one."""
    from peft import LoraConfig, get_peft_model

    from tunesmith.models.load import load_causal_lm, load_tokenizer

    run = tmp_path / "runs" / "tickets-lora"
    cfg = {
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "init_lora_weights": False,
        **lora,
    }
    model = get_peft_model(load_causal_lm(str(model_dir), dtype="float32"), LoraConfig(**cfg))
    model.save_pretrained(str(run / "adapter"))
    load_tokenizer(str(model_dir)).save_pretrained(str(run / "adapter"))
    return run


def test_vllm_export_writes_adapter_and_serve_command(tmp_path: Path, tiny_model_dir: Path) -> None:
    run = _adapter_run(tmp_path, tiny_model_dir, r=12)
    out = tmp_path / "vllm"
    res = CliRunner().invoke(app, ["export", str(run), "--format", "vllm", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "tokenizer_config.json").is_file()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["rank"] == 12 and manifest["max_lora_rank"] == 16  # the smallest vLLM choice >= 12
    assert manifest["target_modules"] == ["q_proj", "v_proj"]
    script = (out / "serve.sh").read_text().splitlines()
    assert script[0] == "#!/bin/sh"
    argv = shlex.split(script[-1])
    assert argv[:3] == ["vllm", "serve", str(tiny_model_dir)]
    assert argv[argv.index("--lora-modules") + 1] == f"tickets-lora={(out / 'adapter').resolve()}"
    assert argv[argv.index("--max-lora-rank") + 1] == "16" and "--enable-lora" in argv
    assert manifest["command"] == script[-1]


def test_vllm_export_refuses_dora_full_models_and_a_used_folder(tmp_path: Path, tiny_model_dir: Path) -> None:
    dora = _adapter_run(tmp_path / "d", tiny_model_dir, use_dora=True)
    res = CliRunner().invoke(app, ["export", str(dora), "--format", "vllm", "--out", str(tmp_path / "o1")])
    assert res.exit_code == 1 and "vLLM would refuse this adapter" in res.output and "DoRA" in res.output
    assert not (tmp_path / "o1").exists()

    res = CliRunner().invoke(
        app, ["export", str(tiny_model_dir), "--format", "vllm", "--out", str(tmp_path / "o2")]
    )
    assert res.exit_code == 1 and "full fine-tune" in res.output and "vllm serve" in res.output

    run = _adapter_run(tmp_path / "p", tiny_model_dir)
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["export", str(run), "--format", "vllm", "--out", str(used)])
    assert res.exit_code == 1 and "not empty" in res.output
    assert (used / "keep.txt").read_text() == "mine"

    res = CliRunner().invoke(
        app, ["export", str(run), "--format", "vllm", "--out", str(tmp_path / "o3"), "--quant", "q8_0"]
    )
    assert res.exit_code == 2 and "--format gguf only" in res.output
