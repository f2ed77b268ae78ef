"""Shared helpers for the training integration tests: a learnable toy task and configs for the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config import ProjectConfig, load_config

WORDS = [
    ("apple", 1),
    ("pear", 1),
    ("car", 0),
    ("chair", 0),
    ("banana", 1),
    ("table", 0),
    ("plum", 1),
    ("truck", 0),
]

TOY_LR = {"full": 1e-2, "lora": 3e-2, "qlora": 3e-2, "dora": 3e-2}  # a 32-wide model takes large steps


def toy_chat(path: Path, repeat: int = 2) -> Path:
    """A yes/no question set: the answer is a pure function of the word, so the loss can fall fast."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Is {w} a fruit?"},
                {"role": "assistant", "content": "yes" if f else "no"},
            ]
        }
        for w, f in WORDS * repeat
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def toy_text(path: Path) -> Path:
    rows = [{"text": "The quick brown fox jumps over the lazy dog. " * 3} for _ in range(6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def toy_config(
    tmp_path: Path, model_dir: Path, finetune: str = "lora", *overrides: str, method: str = "sft"
) -> ProjectConfig:
    data = toy_text(tmp_path / "text.jsonl") if method == "cpt" else toy_chat(tmp_path / "train.jsonl")
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            f"train.method={method}",
            f"train.finetune={finetune}",
            f"train.lr={TOY_LR[finetune]}",
            "train.batch_tokens=128",
            "train.max_steps=12",
            "train.warmup_ratio=0",
            "lora.r=8",
            f"train.output_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


def logits(model, text_ids):  # noqa: ANN001, ANN201
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([text_ids])).logits
