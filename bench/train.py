"""Training benchmark: tunesmith vs TRL's SFTTrainer (defaults, and tuned by hand) on the same fine-tune.

Same model (SmolLM2-135M-Instruct, fp32 on CPU for every run), same tokenized data and loss masks
(assistant turns; TRL gets our token ids and ``assistant_masks``), same LoRA config (r=16, alpha 32, all
linear layers, no dropout: tunesmith's defaults), the same optimizer steps for every tool, 1 epoch.

``--schedule defaults`` (the default; issue 20's Performance target):

- ``tunesmith``: ``tunesmith.train.api.train(cfg)`` with **no setting but** ``train.epochs: 1`` (a run of a
  few minutes; the plan's rule would take 6 epochs of the medium set): the schedule is the plan's rule
  (examples per step, lr, warmup; train/plan.py), the micro-batch and gradient checkpointing the memory
  plan's (auto budget), packing and the loss only at trained positions as shipped.
- ``trl_default``: ``SFTTrainer`` with its defaults (padded random batches, gradient checkpointing on, no
  packing), given the schedule tunesmith's plan chose (examples per step, lr, warmup steps, cosine) so both
  take the same optimizer steps; only ``bf16=False`` is forced, since bf16 is ~250x slower on this CPU.
  (TRL's own schedule defaults, 3 epochs at lr 2e-5, would compare schedules, not engines.)
- ``trl_tuned``: the same steps, padding-free batches (``padding_free=True``: examples concatenated into one
  row, positions restarting), gradient checkpointing off.

``--schedule tokens`` (the earlier harness): ~1,024 tokens per optimizer step, lr 2e-4, 5% warmup; tunesmith
as ``--micro-tokens`` packed micro-batches per step, TRL tuned packing into 1,024-token rows.

Each run is its own subprocess (peak RSS is per process) and is timed end to end (model load, data
preparation, training, saving). The hold-out loss is computed afterwards for every run by the same code
(token-weighted cross-entropy over the assistant tokens of the hold-out chats). Utilisation = the FLOPs the
method needs (``method_flops``) / wall time / the fp32 matmul peak measured in this run.

    flock /tmp/ts-cpu.lock python bench/train.py [--size small|medium|issue] [--only lora] [--schedule tokens]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

MODEL = os.environ.get("TUNESMITH_BENCH_MODEL", "smollm2-135m-instruct")  # tiny: a smoke run
SIZES = {  # chats: (lora train, full/qlora train, hold-out); "issue" is the 260-chat set of issue 9
    "tiny": (8, 8, 4),
    "quick": (24, 10, 10),
    "small": (40, 16, 16),
    "medium": (96, 32, 24),
    "issue": (260, 64, 40),
}
TOOLS = ("tunesmith", "trl_default", "trl_tuned", "tunesmith_upper")
REFERENCES = {"trl_default": 3.0, "trl_tuned": 1.7}  # issue 20: target speed-up of tunesmith over each
PEAK_TARGET_GB = 2.5  # issue 20: tunesmith's peak RSS at default settings
# defaults: tunesmith's own schedule and memory plan, the same steps given to TRL; tokens: the earlier
# fixed 1,024-token steps (module docstring). Workers read it from the environment.
SCHEDULE = os.environ.get("TUNESMITH_BENCH_SCHEDULE", "defaults")
STEP_TOKENS = 1024
# tunesmith takes each 1,024-token step as STEP_TOKENS / MICRO_TOKENS packed micro-batches: token-weighted
# accumulation makes that the same step (tests/unit/train), and activations are held for MICRO_TOKENS tokens
# instead of 1,024. Smaller micro-batches hold less memory and run slower (bench/README.md, lever table);
# --micro-tokens chooses (passed to the worker processes through the environment).
MICRO_TOKENS = int(os.environ.get("TUNESMITH_BENCH_MICRO_TOKENS", "512"))
MICRO_STEPS = STEP_TOKENS // MICRO_TOKENS
LR = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="small", help="data size (default small: ~10-15 min)")
    ap.add_argument("--only", nargs="*", default=["lora", "full", "qlora"], help="methods to run")
    ap.add_argument(
        "--tools", nargs="*", default=list(TOOLS[:3]), help="tunesmith_upper: the upper-layers lever"
    )
    ap.add_argument("--schedule", choices=("defaults", "tokens"), help="default: defaults (module docstring)")
    ap.add_argument("--json", type=Path, help="also write all figures here")
    ap.add_argument(
        "--micro-tokens",
        type=int,
        choices=(256, 512, 1024),
        help="--schedule tokens: tunesmith's micro-batch size within each 1,024-token step (default 512)",
    )
    ap.add_argument("--skip-load-times", action="store_true", help="skip the model load timing (~1 min)")
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "METHOD", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.schedule:
        global SCHEDULE
        os.environ["TUNESMITH_BENCH_SCHEDULE"] = SCHEDULE = args.schedule
    if args.micro_tokens:
        global MICRO_TOKENS, MICRO_STEPS
        os.environ["TUNESMITH_BENCH_MICRO_TOKENS"] = str(args.micro_tokens)
        MICRO_TOKENS, MICRO_STEPS = args.micro_tokens, STEP_TOKENS // args.micro_tokens
    if args.worker:
        tool, method, folder = args.worker
        print("RESULT " + json.dumps(run_worker(tool, method, Path(folder))), flush=True)
        return
    report = run_all(args.size, args.only, args.tools, load=not args.skip_load_times)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def run_all(size: str, methods: list[str], tools: list[str], *, load: bool = True) -> dict:
    from train_data import make_chats, write_jsonl

    n_lora, n_other, n_hold = SIZES[size]
    out: dict = {"size": size, "machine": machine(), "runs": {}}
    print(f"# bench/train.py --size {size}: SmolLM2-135M, fp32 on CPU for every run (TRL: bf16=False forced)")
    print(f"# machine: {out['machine']}")
    from tunesmith.allocator import preload_env

    alloc = "jemalloc" if preload_env({}) else "glibc malloc (jemalloc not installed)"
    print(
        f"# allocator: tunesmith runs on {alloc}, as `tunesmith train` does; TRL on glibc malloc, as its users run it"
    )
    out["schedule"] = SCHEDULE
    if SCHEDULE == "defaults":
        print(
            "# schedule: tunesmith's defaults (plan rule: examples per step, lr, warmup; memory plan: micro-batch), "
            "train.epochs=1 its one setting; TRL given the same steps (default: padded, gradient checkpointing; "
            "tuned: padding-free, no checkpointing)"
        )
    else:
        print(
            f"# step = ~{STEP_TOKENS} tokens for every tool (tunesmith: {MICRO_STEPS} packed micro-batches of <= {MICRO_TOKENS} "
            f"tokens; TRL default: 8 padded examples; TRL tuned: one packed {STEP_TOKENS}-token row), 1 epoch"
        )
    out["matmul_peak_gflops"] = [matmul_peak()]
    print(f"# fp32 matmul peak (start): {out['matmul_peak_gflops'][0]:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as tmp:
        for method in methods:
            n_train = n_lora if method == "lora" else n_other
            folder = Path(tmp) / method
            write_jsonl(make_chats(n_train, seed=1), folder / "train.jsonl")
            write_jsonl(make_chats(n_hold, seed=2), folder / "holdout.jsonl")
            for tool in tools:
                if tool == "tunesmith_upper" and method != "lora":
                    continue  # the upper-layers lever is an adapter option
                res = _subprocess_worker(tool, method, folder)
                out["runs"][f"{method}/{tool}"] = res
                print(f"{method:5s} {tool:11s} " + _fmt(res), flush=True)
    out["matmul_peak_gflops"].append(matmul_peak())
    peak = max(out["matmul_peak_gflops"])
    print(
        f"# fp32 matmul peak (end): {out['matmul_peak_gflops'][1]:.1f} GFLOP/s; utilisation uses the max, {peak:.1f}"
    )
    out["load"] = load_times() if load else None
    if load:
        print(
            f"model load: first (GGUF conversion) {out['load']['first_s']:.1f} s, cached {out['load']['cached_s']:.2f} s "
            f"(target <= 2 s: {'met' if out['load']['cached_s'] <= 2 else 'MISSED'}); imports before either, timed "
            f"apart: {out['load']['imports_s']:.1f} s (torch, transformers and its Llama code: paid by any tool)"
        )
    print_summary(out, methods, tools, peak)
    return out


def _subprocess_worker(tool: str, method: str, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, method, str(folder)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if tool.startswith("tunesmith"):
        # what `tunesmith train` does for itself (tunesmith/allocator.py); TRL runs as its users run it
        from tunesmith.allocator import preload_env

        env = preload_env(env) or env
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout)[-1500:]}


def _fmt(r: dict) -> str:
    if "error" in r:
        return "FAILED: " + r["error"].strip().splitlines()[-1]
    return (
        f"wall {r['wall_s']:7.1f} s  useful {r['useful_tokens_per_s']:6.1f} tok/s  peak RSS {r['peak_rss_gb']:5.2f} GB  "
        f"hold-out loss {r['holdout_loss']:.4f}  padding {r['padding_frac']:.0%}  "
        f"{r.get('steps', '?')} steps, median step {r.get('median_step_s') or float('nan'):.2f} s"
    )


def print_summary(out: dict, methods: list[str], tools: list[str], peak: float) -> None:
    print("\n## ratios (wall time of the reference / tunesmith; memory tunesmith / reference)")
    for method in methods:
        ours = out["runs"].get(f"{method}/tunesmith", {})
        if "wall_s" not in ours:
            continue
        for tool in tools:  # model FLOPs / wall time / measured matmul peak, every run
            r = out["runs"].get(f"{method}/{tool}", {})
            if "wall_s" in r:
                r["utilisation"] = r["method_gflop"] / r["wall_s"] / peak
                print(
                    f"{method} {tool}: utilisation {r['utilisation']:.0%} of the measured matmul peak "
                    f"({r['method_gflop'] / r['wall_s']:.1f} of {peak:.1f} GFLOP/s, whole run)"
                )
        print(
            f"{method}: tunesmith peak RSS {ours['peak_rss_gb']:.2f} GB (target <= {PEAK_TARGET_GB} GB: "
            f"{'met' if ours['peak_rss_gb'] <= PEAK_TARGET_GB else 'MISSED'}); memory plan "
            f"{ours.get('plan_memory', {}).get('micro_tokens')} tokens per micro-batch, estimate "
            f"{ours.get('plan_memory', {}).get('estimate_gb')} GB"
        )
        upper = out["runs"].get(f"{method}/tunesmith_upper", {})
        if "wall_s" in upper:
            print(
                f"  lever: LoRA on the upper half of the layers only: {ours['wall_s'] / upper['wall_s']:.2f}x faster than "
                f"all layers, hold-out loss {upper['holdout_loss'] / ours['holdout_loss'] - 1:+.2%} (quality cost)"
            )
        for tool in [t for t in tools if t in REFERENCES]:
            ref = out["runs"].get(f"{method}/{tool}", {})
            if "wall_s" not in ref:
                continue
            speed = ref["wall_s"] / ours["wall_s"]
            mem = ours["peak_rss_gb"] / ref["peak_rss_gb"]
            dloss = ours["holdout_loss"] / ref["holdout_loss"] - 1
            target = REFERENCES[tool]
            steps = (
                f", median step {ref['median_step_s'] / ours['median_step_s']:.2f}x"
                if ref.get("median_step_s") and ours.get("median_step_s")
                else ""
            )
            print(
                f"  vs {tool:11s}: {speed:.2f}x faster in wall time (target {target}x: "
                f"{'met' if speed >= target else 'MISSED'}){steps}, memory {mem:.2f}x, "
                f"hold-out loss {dloss:+.2%} (equal or better, within 2%: {'met' if dloss <= 0.02 else 'MISSED'})"
            )


# --------------------------------------------------------------------------- one run (in a subprocess)


def run_worker(tool: str, method: str, folder: Path) -> dict:
    import torch

    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.load import load_tokenizer

    t0 = time.perf_counter()
    tok = load_tokenizer(MODEL)
    train = [tokenize_chat(tok, r["messages"]) for r in _read(folder / "train.jsonl")]
    hold = [tokenize_chat(tok, r["messages"]) for r in _read(folder / "holdout.jsonl")]
    out_dir = folder / f"out-{tool}"
    step_times: list[float] = []  # seconds of each optimizer step (end to end of the step)
    extra: dict = {}
    if tool.startswith("tunesmith"):
        model, extra = _run_tunesmith(
            method, folder, out_dir, step_times, upper_only=tool == "tunesmith_upper"
        )
        padding = 0.0
    else:
        model, padding = _run_trl(tool, method, train, tok, out_dir, step_times)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.manual_seed(0)
    useful = sum(len(e.input_ids) for e in train)
    return {
        "wall_s": wall,
        "useful_tokens": useful,
        "useful_tokens_per_s": useful / wall,
        "peak_rss_gb": peak,
        "holdout_loss": holdout_loss(model, hold),
        "padding_frac": padding,
        "method_gflop": method_flops(
            model, train, method, adapted_frac=0.5 if tool == "tunesmith_upper" else 1.0
        )
        / 1e9,
        "threads": torch.get_num_threads(),
        "steps": len(step_times),
        # the first step pays one-time costs (allocation, the memory plan's measurement) in every tool
        "median_step_s": statistics.median(step_times[1:]) if len(step_times) > 1 else None,
        **extra,
    }


def _run_tunesmith(
    method: str, folder: Path, out_dir: Path, step_times: list[float], *, upper_only: bool = False
) -> tuple:
    from tunesmith.config import validate_config_dict
    from tunesmith.train.api import train

    # A 2-chat hold-out keeps tunesmith's own validation passes negligible; the hold-out loss reported is
    # computed afterwards on the full hold-out by the same code for every tool.
    (folder / "mini_holdout.jsonl").write_text(
        "".join((folder / "holdout.jsonl").read_text().splitlines(True)[:2])
    )
    n_layers = 30  # SmolLM2-135M
    lora = {"layers_to_transform": list(range(n_layers // 2, n_layers))} if upper_only else {}
    clock = [time.perf_counter()]

    def on_progress(event: dict) -> None:
        if event.get("event") == "step":
            now = time.perf_counter()
            step_times.append(now - clock[0])
            clock[0] = now
        elif event.get("event") == "plan":
            clock[0] = time.perf_counter()

    if SCHEDULE == "defaults":  # everything tunesmith's, but one epoch (module docstring)
        cfg = validate_config_dict(
            {
                "model": {"name": MODEL},
                "lora": lora,
                "data": {"train": str(folder / "train.jsonl"), "holdout": str(folder / "mini_holdout.jsonl")},
                "train": {"finetune": method, "epochs": 1, "output_dir": str(out_dir), "run_name": "bench"},
            }
        )
        result = train(cfg, on_progress=on_progress)
        plan = result.summary.extras.plan.model_dump(mode="json")
        (folder / "plan.json").write_text(json.dumps(plan))  # the steps the TRL runs are given
        return result.model, {"plan": {k: v for k, v in plan.items() if k != "memory"},
                              "plan_memory": plan["memory"], "dtype": str(next(result.model.parameters()).dtype)}  # fmt: skip
    cfg = validate_config_dict(
        {
            "model": {"name": MODEL, "dtype": "float32"},
            "lora": lora,
            "data": {"train": str(folder / "train.jsonl"), "holdout": str(folder / "mini_holdout.jsonl")},
            "train": {
                "finetune": method,
                "lr": LR[method],
                "epochs": 1,
                "batch_tokens": MICRO_TOKENS,
                "grad_accum": MICRO_STEPS,
                "packing": True,
                "lr_scheduler": "cosine",
                "warmup_ratio": 0.05,
                "seed": 42,
                "output_dir": str(out_dir),
                "run_name": "bench",
                "logging_steps": 1000,
            },
        }
    )
    return train(cfg, on_progress=on_progress).model, {}


def _run_trl(tool: str, method: str, train: list, tok, out_dir: Path, step_times: list[float]):
    import peft
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            step_times.append(time.perf_counter() - self.t)

    from tunesmith.models.load import load_causal_lm

    torch.manual_seed(42)
    model = load_causal_lm(MODEL, dtype="float32", load_in_4bit=method == "qlora", attn_implementation="sdpa")
    ds = Dataset.from_list(
        [{"input_ids": e.input_ids, "assistant_masks": [int(x != -100) for x in e.labels]} for e in train]
    )
    common = dict(
        output_dir=str(out_dir),
        num_train_epochs=1,
        learning_rate=LR[method],
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_grad_norm=1.0,
        weight_decay=0.0,
        seed=42,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        bf16=False,
        fp16=False,
    )  # fp32 forced on CPU for every TRL run
    if SCHEDULE == "defaults":  # the steps tunesmith's plan chose (written by its run, which goes first)
        plan = json.loads((out_dir.parent / "plan.json").read_text())
        per_step = plan["examples_per_step"]
        common.update(
            num_train_epochs=plan["epochs"], learning_rate=plan["lr"], warmup_steps=plan["warmup_steps"]
        )
        if tool == "trl_default":  # its engine defaults: padded random batches, gradient checkpointing on
            args = SFTConfig(**common, per_device_train_batch_size=per_step)
        else:  # padding-free rows of the same examples, no checkpointing
            args = SFTConfig(
                **common,
                per_device_train_batch_size=per_step,
                padding_free=True,
                max_length=None,  # TRL refuses a max_length it would not enforce; every chat is < 1,024 tokens
                gradient_checkpointing=False,
            )
            per_step = None
    elif tool == "trl_default":
        args = SFTConfig(
            **common
        )  # per_device_train_batch_size=8 (padded), gradient checkpointing on, no packing
        per_step = args.per_device_train_batch_size
    else:
        args = SFTConfig(
            **common,
            packing=True,
            max_length=STEP_TOKENS,
            per_device_train_batch_size=1,
            gradient_checkpointing=False,
        )
        per_step = None
    lora = (
        None
        if method == "full"
        else peft.LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=lora,
        callbacks=[StepClock()],
    )
    trainer.train()
    trainer.save_model(str(out_dir / "final"))
    lengths = [len(e.input_ids) for e in train]
    return trainer.model, (_padding_of_random_batches(lengths, per_step) if per_step else 0.0)


def _padding_of_random_batches(lengths: list[int], per: int) -> float:
    # TRL's default sampler shuffles, so padding depends on the draw: report its expectation over draws
    import random

    fracs = []
    for seed in range(20):
        order = lengths[:]
        random.Random(seed).shuffle(order)
        padded = sum(max(order[i : i + per]) * len(order[i : i + per]) for i in range(0, len(order), per))
        fracs.append(1 - sum(lengths) / padded)
    return statistics.mean(fracs)


def holdout_loss(model, hold: list) -> float:
    """Token-weighted mean cross-entropy over the trained (assistant) tokens of ``hold``."""
    import torch

    from tunesmith.train.loss import naive_sum_token_loss
    from tunesmith.train.packing import build_batches

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for b in build_batches(hold, batch_tokens=STEP_TOKENS, packing=True, seed=0, epoch=0):
            loss, k = naive_sum_token_loss(model, b)
            total, n = total + float(loss), n + k
    return total / n


def method_flops(model, train: list, method: str, adapted_frac: float = 1.0) -> float:
    """FLOPs one epoch needs at minimum: linear layers forward (2/param/token) and activation backward
    (2/param/token), weight gradients (2/param/token) only where weights train (all for full, the LoRA
    factors otherwise), causal attention (scores + values, fwd 4*ctx*d/2 per layer, x3 with backward), and
    the LM head only at trained positions (fwd + grad of hidden, + weight grad for full)."""
    cfg = model.config
    layers, d, vocab = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = sum(
        p.numel() for n, p in inner.model.layers.named_parameters() if p.dim() == 2 and "lora_" not in n
    )
    if method == "qlora":  # 4-bit weights are stored packed: count the logical matrix sizes
        body = layers * (
            d * (cfg.num_attention_heads * (d // cfg.num_attention_heads)) * 2
            + d * cfg.num_key_value_heads * (d // cfg.num_attention_heads) * 2
            + 3 * d * cfg.intermediate_size
        )
    lora = sum(p.numel() for n, p in inner.named_parameters() if "lora_" in n)
    total = 0.0
    for e in train:
        t = len(e.input_ids)
        trained = e.n_trained
        # backward runs only through the adapted (upper) fraction of the layers
        linear = 2 * body * t * (1 + adapted_frac) + (2 * body * t if method == "full" else 6 * lora * t)
        attn = (1 + 2 * adapted_frac) * layers * 4 * d * t * (t + 1) / 2
        head = trained * vocab * d * (6 if method == "full" else 4)
        total += linear + attn + head
    return total


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- machine, peak, load


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.platform()}, load avg {os.getloadavg()[0]:.1f}"


def matmul_peak() -> float:
    """Best fp32 GFLOP/s of square matmuls (the sizes of this model's big products), in a fresh process."""
    code = (
        "import torch,time\nbest=0\nfor n in (1024,1536,2048):\n a=torch.randn(n,n);b=torch.randn(n,n);a@b\n"
        " for _ in range(3):\n  t=time.perf_counter();[a@b for _ in range(5)];dt=time.perf_counter()-t\n"
        "  best=max(best,5*2*n**3/dt/1e9)\nprint(best)"
    )
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def load_times() -> dict:
    """First load (GGUF conversion into an empty TUNESMITH_HOME) vs cached load, each in a fresh process."""
    # Imports are framework costs, the same for any transformers-based loader (TRL's included), so they are
    # done before the clock starts: torch, transformers, and the Llama model code that transformers imports
    # lazily on the first from_pretrained (~2.3 s here, timed apart and printed as imports_s).
    code = (
        "import time;t=time.perf_counter();import torch,transformers;"
        "from transformers.models.llama import modeling_llama, configuration_llama;"
        "from tunesmith.models.load import load_causal_lm;i=time.perf_counter()-t;t=time.perf_counter();"
        "m=load_causal_lm('smollm2-135m-instruct', dtype='float32');print(i, time.perf_counter()-t)"
    )

    def fresh(env: dict) -> tuple[float, float]:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout.split()
        return float(out[-2]), float(out[-1])

    with tempfile.TemporaryDirectory(prefix="tunesmith-home-") as home:
        _, first = fresh({**os.environ, "TUNESMITH_HOME": home, "HF_HUB_OFFLINE": "1"})
    runs = [fresh({**os.environ, "HF_HUB_OFFLINE": "1"}) for _ in range(3)]
    cached = [r[1] for r in runs]
    imports = statistics.median(r[0] for r in runs)
    return {
        "first_s": first,
        "cached_s": statistics.median(cached),
        "cached_runs": cached,
        "imports_s": imports,
    }


if __name__ == "__main__":
    main()
