"""Where a tunesmith LoRA step's time goes: torch.profiler over one optimizer step of SmolLM2-135M (fp32,
CPU, packed 1,024-token step as 4 x 256-token micro-batches, loss at trained positions only), grouped into
matmuls, attention, elementwise/norm ops, optimizer and the rest, next to the matmul-only time the step's
FLOPs would take at the measured peak.

    flock /tmp/tunesmith-heavy.lock python bench/profile_step.py
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

GROUPS = {
    "matmul (mm/addmm/bmm/linear)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
    "attention (sdpa)": ("scaled_dot_product", "_flash_attention"),
    "optimizer": ("adamw", "_fused_adam"),
}


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.profiler import ProfilerActivity, profile

    from train import matmul_peak
    from train_data import make_chats
    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.loss import sum_token_loss
    from tunesmith.train.packing import build_batches

    tok = load_tokenizer("smollm2-135m-instruct")
    examples = [tokenize_chat(tok, c["messages"]) for c in make_chats(24, seed=0)]
    model = load_causal_lm("smollm2-135m-instruct", dtype="float32", attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    ).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, fused=True)
    batches = build_batches(examples, batch_tokens=256, packing=True, seed=0, epoch=0)

    def step(micro):
        n = sum(b.n_trained for b in micro)
        for b in micro:
            loss, _ = sum_token_loss(model, b)
            (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[:4])  # warm-up
    micro = batches[4:8]
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(micro)
    wall = time.perf_counter() - t0
    totals: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        name = ev.key.lower()
        group = next((g for g, keys in GROUPS.items() if any(k.lower() in name for k in keys)), None)
        if group is None and ev.key.startswith("aten::") and ev.self_cpu_time_total > 0:
            group = "elementwise, norms, copies (other aten)"
        if group:
            totals[group] += ev.self_cpu_time_total / 1e6
    tokens = sum(b.n_tokens for b in micro)
    peak = matmul_peak()
    body = sum(
        p.numel()
        for n, p in model.get_base_model().model.layers.named_parameters()
        if p.dim() == 2 and "lora_" not in n
    )
    trained = sum(b.n_trained for b in micro)
    need = 4 * body * tokens + 4 * trained * model.config.vocab_size * model.config.hidden_size
    print(
        f"# one LoRA step, {tokens} tokens ({trained} trained), wall {wall:.2f} s under the profiler, "
        f"{tokens / wall:.0f} tokens/s; fp32 matmul peak {peak:.1f} GFLOP/s"
    )
    print(f"# the step's linear-layer + head FLOPs at that peak would take {need / peak / 1e9:.2f} s")
    print("| where | self CPU s | share |\n|---|---|---|")
    cpu_total = sum(totals.values())
    for group, secs in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {secs:.2f} | {secs / cpu_total:.0%} |")
    print("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
