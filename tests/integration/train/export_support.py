"""Shared by the GGUF export tests (marked ``llamacpp``): llama.cpp must be installed, and a tiny Llama whose
tokenizer llama.cpp's converter knows (SmolLM2's; the tiny model's own BPE is not one llama.cpp recognizes)."""

from __future__ import annotations

from pathlib import Path

import pytest


def require_llamacpp() -> None:
    """Fail (not skip) when llama.cpp is missing: `make install` always builds it, so a missing one is a broken
    install, and a skipped parity test would hide that."""
    from tunesmith.models.llamacpp import converter_dir

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python is not installed: run `make install` (the export extra).")
    if not (converter_dir() / "convert_hf_to_gguf.py").is_file():
        pytest.fail(f"llama.cpp's converter is missing ({converter_dir()}): run `make install`.")


def smol_tiny_adapter_run(root: Path, smollm2_dir: Path, seed: int = 0) -> Path:
    """A run folder with a real peft LoRA adapter (random, non-zero B, so merging changes the weights) on a
    tiny from-config Llama that uses SmolLM2's tokenizer and chat template."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.models.tiny import tiny_config_kwargs

    base = root / "base"
    if not (base / "config.json").exists():
        tok = load_tokenizer(str(smollm2_dir))
        torch.manual_seed(0)
        ids = {
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.bos_token_id,
            "pad_token_id": tok.pad_token_id,
        }
        LlamaForCausalLM(LlamaConfig(**tiny_config_kwargs(len(tok)), **ids)).save_pretrained(base)
        tok.save_pretrained(base)
    torch.manual_seed(seed)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    run = root / f"run-{seed}"
    get_peft_model(load_causal_lm(str(base), dtype="float32"), lora).save_pretrained(str(run / "adapter"))
    load_tokenizer(str(base)).save_pretrained(str(run / "adapter"))
    return run
