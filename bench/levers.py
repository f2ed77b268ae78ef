"""Speed levers, each measured alone against the tunesmith baseline on the same LoRA step.

Every variant runs in its own subprocess (thread settings and torch.compile are process-wide, and peak RSS
is per process): SmolLM2-135M, LoRA r=16 on all linear layers, fp32 on CPU, the same mixed-length chats,
one optimizer step = ``--step-tokens`` tokens. Reported: median useful tokens/s over the timed steps (after
one warm-up step) and peak RSS. ``python bench/levers.py`` prints a markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

VARIANTS = {
    "baseline": "tunesmith defaults: packed rows, trained-positions-only chunked loss, sdpa_packed attention, default threads, fused AdamW",
    "glibc_fixed_mmap": "glibc mmap threshold pinned at 128 KiB (mallopt): freed activations go back to the OS instead of a fragmented heap",
    "masked_sdpa": "sdpa with transformers' block-diagonal mask over each packed row (the default before sdpa_packed)",
    "full_logits": "loss from the model's full logits (every position, 49k vocab)",
    "padded_random": "no packing: random batches padded to the longest (what TRL does by default)",
    "padded_grouped": "no packing: length-grouped padded batches (tunesmith's non-packing path)",
    "eager": "eager attention instead of sdpa",
    "threads1": "torch.set_num_threads(1)",
    "upper_half": "LoRA on the upper 15 of 30 layers only (no backward through the lower ones)",
    "forloop_adamw": "AdamW with its CPU default (a for-loop over parameters) instead of fused=True",
    "foreach_adamw": "AdamW(foreach=True) instead of fused=True",
    "compile": "torch.compile of the decoder layers",
    "grad_ckpt": "gradient checkpointing on (TRL's default)",
    "micro256": "256-token steps (one optimizer step per 256 tokens)",
    "accum4x256": "4 packed micro-batches of <= 256 tokens accumulated per 1,024-token step (less activation memory)",
    "accum2x512": "2 packed micro-batches of <= 512 tokens accumulated per 1,024-token step",
}


def run_variant(name: str, n_examples: int, step_tokens: int, steps: int) -> dict:
    import torch

    from train_data import make_chats
    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.loss import naive_sum_token_loss, sum_token_loss
    from tunesmith.train.packing import build_batches

    if name == "glibc_fixed_mmap":
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; also stops glibc raising it
    if name == "micro256":
        step_tokens = 256
    if name == "threads1":
        torch.set_num_threads(1)
    tok = load_tokenizer("smollm2-135m-instruct")
    examples = [tokenize_chat(tok, c["messages"]) for c in make_chats(n_examples, seed=0)]
    torch.manual_seed(0)
    model = load_causal_lm(
        "smollm2-135m-instruct", dtype="float32", attn_implementation="eager" if name == "eager" else "sdpa"
    )
    if name not in ("eager", "masked_sdpa"):
        from tunesmith.models import attention

        attention.register()
        model.set_attn_implementation(attention.NAME)
    model.config.use_cache = False
    from peft import LoraConfig, get_peft_model

    layers = list(range(15, 30)) if name == "upper_half" else None
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            # peft refuses layers_to_transform with the "all-linear" shorthand: the same modules, by name
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        ),
    )
    if name == "grad_ckpt":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if name == "compile":
        for layer in model.get_base_model().model.layers:
            layer.compile(dynamic=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt_kw = {"forloop_adamw": {}, "foreach_adamw": {"foreach": True}}.get(name, {"fused": True})
    opt = torch.optim.AdamW(params, lr=2e-4, **opt_kw)
    loss_fn = naive_sum_token_loss if name == "full_logits" else sum_token_loss
    if name == "padded_random":
        batches = _padded_random(examples, step_tokens)
    else:
        batches = build_batches(
            examples, batch_tokens=step_tokens, packing=not name.startswith("padded"), seed=0, epoch=0
        )
    accum = {"accum4x256": 4, "accum2x512": 2}.get(name, 1)
    if accum > 1:
        batches = build_batches(examples, batch_tokens=step_tokens // accum, packing=True, seed=0, epoch=0)
    steps_of = [batches[s : s + accum] for s in range(0, len(batches), accum)]
    times, useful = [], []
    for i, group in enumerate(steps_of[: steps + 1]):
        t0 = time.perf_counter()
        n_step = sum(int((b.labels != -100).sum()) for b in group)
        for b in group:  # token-weighted accumulation, as the trainer does
            loss, n = loss_fn(model, b)
            (loss / max(n_step, 1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators (and compiles)
            times.append(time.perf_counter() - t0)
            useful.append(sum(b.n_tokens for b in group))
    per_tok = [t / u for t, u in zip(times, useful, strict=True)]
    return {
        "variant": name,
        "tokens_per_s": 1 / statistics.median(per_tok),
        "step_s": statistics.median(times),
        "padding_frac": sum(b.padded_tokens for b in batches) / sum(b.input_ids.numel() for b in batches),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": torch.get_num_threads(),
    }


def _padded_random(examples, step_tokens):
    # TRL-default-like batches: random order, a fixed number of examples per batch, padded to the longest
    import random

    from tunesmith.train.packing import _padded_batch

    avg = sum(len(e.input_ids) for e in examples) / len(examples)
    per = max(1, round(step_tokens / avg))
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    return [_padded_batch([examples[i] for i in order[s : s + per]]) for s in range(0, len(order), per)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant")
    ap.add_argument("--only", nargs="*", default=list(VARIANTS))
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--step-tokens", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.examples, args.step_tokens, args.steps)))
        return
    rows = []
    for name in args.only:
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            name,
            "--examples",
            str(args.examples),
            "--step-tokens",
            str(args.step_tokens),
            "--steps",
            str(args.steps),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    print("\n| lever | tokens/s | vs baseline | padding | peak RSS GB |\n|---|---|---|---|---|")
    for r in rows:
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        print(
            f"| {r['variant']}: {VARIANTS[r['variant']]} | {r['tokens_per_s']:.0f} | {ratio:.2f}x | "
            f"{r['padding_frac']:.0%} | {r['peak_rss_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()
