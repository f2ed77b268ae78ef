"""GPU LoRA speed check: a from-config ~1.1B Llama (random weights, TinyLlama's shape), bf16, LoRA r=16 on
all linear layers, the same mixed-length packed data for tunesmith's hot path (``packing.build_batches`` +
``loss.sum_token_loss``) and TRL's ``SFTTrainer`` tuned (packing, bf16, no gradient checkpointing).

Prints tokens/s for both, the ratio, and utilisation = method FLOPs / time / the bf16 matmul peak measured
in the same run. Attention: ``flash_attention_2`` when the flash-attn package is installed (varlen kernels
read the packed ``position_ids``), else ``sdpa`` (block-diagonal mask from the same position_ids).
Random weights are fine for speed; the loss values are meaningless here. Finishes in a few minutes.

    python bench/gpu_lora.py [--steps 20] [--step-tokens 8192]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time

SHAPE = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=4096,
)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--step-tokens", type=int, default=8192)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(
            "bench/gpu_lora.py needs a CUDA GPU (none found); the CPU benchmark is bench/train.py."
        )
    attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    peak = bf16_peak()
    examples = make_examples(args.steps * args.step_tokens + args.step_tokens)
    print(
        f"# {torch.cuda.get_device_name()}: bf16 matmul peak {peak:.0f} TFLOP/s; attention {attn}; "
        f"~1.1B Llama from config, LoRA r=16 all-linear, {args.steps} steps x {args.step_tokens} tokens"
    )
    ours = run_tunesmith(examples, attn, args.steps, args.step_tokens)
    torch.cuda.empty_cache()
    theirs = run_trl(examples, attn, args.steps, args.step_tokens)
    flops_per_token = method_flops_per_token()
    for name, r in (("tunesmith", ours), ("trl_tuned", theirs)):
        util = r["tokens_per_s"] * flops_per_token / 1e12 / peak
        print(
            f"{name:10s} {r['tokens_per_s']:9.0f} tok/s  peak mem {r['peak_mem_gb']:5.1f} GB  utilisation {util:.0%}"
        )
    print(f"tunesmith / TRL tuned: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s")


def make_examples(total_tokens: int):
    from tunesmith.data.tokenize import Tokenized

    rng = random.Random(0)
    out, n = [], 0
    while n < total_tokens:
        length = rng.choice([rng.randint(40, 120), rng.randint(120, 400), rng.randint(400, 1500)])
        prompt = length // 2
        ids = [rng.randrange(3, SHAPE["vocab_size"]) for _ in range(length)]
        out.append(Tokenized(ids, [-100] * prompt + ids[prompt:], length))
        n += length
    return out


def build_model(attn: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, attn_implementation=attn)).to("cuda", torch.bfloat16)
    model.config.use_cache = False
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def run_tunesmith(examples, attn: str, steps: int, step_tokens: int) -> dict:
    import torch

    from tunesmith.train.loss import sum_token_loss
    from tunesmith.train.packing import build_batches

    model = build_model(attn).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, fused=True)
    batches = build_batches(examples, batch_tokens=step_tokens, packing=True, seed=0, epoch=0)[: steps + 1]
    torch.cuda.reset_peak_memory_stats()
    tokens, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == 1:  # the first step warms up kernels and the allocator
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss, n = sum_token_loss(model, b)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += b.n_tokens if i else 0
    torch.cuda.synchronize()
    out = {
        "tokens_per_s": tokens / (time.perf_counter() - t0),
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
    }
    del model, opt
    return out


def run_trl(examples, attn: str, steps: int, step_tokens: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunesmith.models.tiny import build_tiny_tokenizer

    model = build_model(attn)
    ds = Dataset.from_list(
        [{"input_ids": e.input_ids, "assistant_masks": [int(x != -100) for x in e.labels]} for e in examples]
    )

    class Clock(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            if state.global_step == 1:
                torch.cuda.synchronize()
                Clock.t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SFTConfig(
            output_dir=tmp,
            max_steps=steps + 1,
            packing=True,
            max_length=step_tokens,
            per_device_train_batch_size=1,
            gradient_checkpointing=False,
            bf16=True,
            learning_rate=2e-4,
            report_to=[],
            save_strategy="no",
            logging_steps=1000,
        )
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=ds,
            processing_class=build_tiny_tokenizer(),
            callbacks=[Clock()],
        )
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - Clock.t0
    return {
        "tokens_per_s": steps * step_tokens / elapsed,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
    }


def method_flops_per_token() -> float:
    """Linear layers forward + activation backward (4 FLOPs/param/token); the head only where trained (half
    the tokens here); attention is left out (a lower bound, so utilisation is not flattered)."""
    d, f, layers, h, kv = (
        SHAPE[k]
        for k in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
        )
    )
    per_layer = d * d * 2 + 2 * d * (d // h) * kv + 3 * d * f
    return 4 * layers * per_layer + 0.5 * 4 * d * SHAPE["vocab_size"]


def bf16_peak() -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


if __name__ == "__main__":
    main()
