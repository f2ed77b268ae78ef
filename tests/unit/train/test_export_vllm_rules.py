"""vLLM's adapter rules, checked before an export is written (vllm/lora/peft_helper.py, vllm/config/lora.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.train.export_vllm import MAX_LORA_RANKS, check_vllm_adapter, serve_command

pytestmark = pytest.mark.unit

OK = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none"}
NAMES = [
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
]


def test_a_plain_lora_passes() -> None:
    assert check_vllm_adapter(OK, NAMES) == []


@pytest.mark.parametrize(
    ("change", "names", "words"),
    [
        ({"use_dora": True}, NAMES, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, NAMES, "modules_to_save"),
        ({"r": 1024}, NAMES, "largest --max-lora-rank is 512"),
        ({"rank_pattern": {"q_proj": 640}}, NAMES, "rank_pattern[q_proj] is 640"),
        ({"r": 0}, NAMES, "positive integer"),
        ({"bias": "all"}, NAMES, "biases"),
        ({"lora_bias": True}, NAMES, "biases"),
        ({"init_lora_weights": "pissa_niter_4"}, NAMES, "changes the base weights"),
        ({"target_modules": ["embed_tokens", "q_proj"]}, NAMES, "['embed_tokens']"),
        ({"peft_type": "IA3"}, NAMES, "LoRA adapters only"),
        ({}, [*NAMES, "base_model.model.lm_head.weight"], "non-LoRA tensors"),
        ({"target_modules": "all-linear"}, [n.replace("q_proj", "wq") for n in NAMES], "['wq']"),
    ],
)
def test_each_rule_vllm_enforces_is_named(change, names, words) -> None:
    problems = check_vllm_adapter({**OK, **change}, names)
    assert len(problems) == 1 and words in problems[0], problems


def test_serve_command_quotes_paths_and_sets_the_rank() -> None:
    cmd = serve_command("HuggingFaceTB/SmolLM2-135M-Instruct", "tickets", Path("/data/my runs/adapter"), 16)
    assert cmd == (
        "vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora --lora-modules "
        "'tickets=/data/my runs/adapter' --max-lora-rank 16"
    )
    assert MAX_LORA_RANKS == (1, 8, 16, 32, 64, 128, 256, 320, 512)
