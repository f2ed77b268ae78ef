"""The embedded SmolLM2-135M with LoRA for a few steps; the adapter reloads with plain peft to the same logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.train.api import train

pytestmark = pytest.mark.real


def test_smollm2_lora_adapter_reloads_with_plain_peft(tmp_path: Path, smollm2_dir: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"Route: {q}"}, {"role": "assistant", "content": a}]}
        for q, a in [
            ("I was charged twice", "billing"),
            ("App crashes on start", "technical"),
            ("Reset my password", "account"),
            ("Refund please", "billing"),
            ("Error 500 on login", "technical"),
            ("Change my email", "account"),
        ]
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = load_config(
        None,
        [
            "model.name=smollm2-135m-instruct",
            f"data.train={data}",
            "data.max_seq_len=64",
            "data.holdout_fraction=0.34",
            # few steps, no mid-run evaluations or checkpoints: the point is the real model's path, not learning
            "train.finetune=lora",
            "lora.r=8",
            "train.max_steps=2",
            "train.batch_tokens=512",
            "train.warmup_ratio=0",
            "train.eval_every=1000",
            "train.save_every=1000",
            f"train.output_dir={tmp_path / 'runs'}",
            "train.run_name=real",
        ],
    )
    result = train(cfg)
    s = result.summary
    assert s.status == "completed" and s.steps == 2 and s.extras.lr == 5e-4  # the rule: adapters < 1B params
    assert math.isfinite(s.final_train_loss) and math.isfinite(s.final_val_loss)
    assert s.tokens_trained > 0

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = result.run_dir / "adapter"
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, adapter).eval()
    tok = AutoTokenizer.from_pretrained(adapter)  # the tokenizer and chat template saved beside the adapter
    assert tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Route: refund"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    trained = result.model.eval()
    with torch.no_grad():
        got, want = reloaded(input_ids=ids).logits, trained(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    b_norms = [p.abs().sum().item() for n, p in reloaded.named_parameters() if "lora_B" in n]
    assert b_norms and all(x > 0 for x in b_norms)  # LoRA B starts at zero: training moved every one
