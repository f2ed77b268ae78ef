"""DPO benchmark: tunesmith's engine vs TRL's ``DPOTrainer`` (its defaults, and tuned by hand) on the same pairs.

Same model (SmolLM2-135M-Instruct, **fp32 on CPU for every run**), same pairs (the first ``--pairs`` of the
150 generated training pairs of ~600 tokens a side, and ``--holdout`` hold-out pairs: a passage, a question,
and an answer paragraph whose chosen side ends its sentences with '!' and rejected side with '.'; generated
here by ``make_pairs``, seeded by index, nothing downloaded), same LoRA (r=16, alpha 32, all linear layers, no
dropout: TRL disables dropout by default), same optimisation (8 pairs per optimizer step, 1 epoch, ``--lr``
linear to 0, no warmup, beta 0.1, sigmoid loss, seed 42), ``max_length`` 1024:

- ``tunesmith``: ``tunesmith.train.api.train(cfg)`` with ``method: dpo`` and its defaults (pairs packed,
  answer-only log-probs, reference pass once, memory-planned micro-batches).
- ``trl_default``: ``DPOConfig`` defaults for everything else (8 padded pairs per micro-batch, gradient
  checkpointing on, reference log-probs recomputed every step); only ``bf16=False`` is forced.
- ``trl_tuned``: 2 pairs per micro-batch x 4 accumulation, gradient checkpointing off, reference log-probs
  precomputed once (``precompute_ref_log_probs``).

Each run is its own subprocess, timed end to end (model load, data preparation, reference pass, training,
saving), with its peak RSS from ``resource.getrusage`` and each optimizer step's time (median printed).
tunesmith's own hold-out is 2 pairs (its end-of-run hold-out passes are not part of TRL's run); hold-out
preference accuracy (share of hold-out pairs whose summed answer log-prob margin is positive) is computed
afterwards for every run's saved adapter by the same code (``tunesmith.train.pref_engine.pair_logps``), in its
own process. Utilisation = the FLOPs the method needs (``dpo_flops``: policy forward + backward, one reference
forward per sequence) / wall time / the fp32 matmul peak measured at the start and end of the run (the max).

    flock /tmp/ts-cpu.lock python bench/dpo.py [--pairs 150] [--holdout 30] [--only tunesmith trl_tuned]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

MODEL = os.environ.get("TUNESMITH_BENCH_MODEL", "smollm2-135m-instruct")  # --model (workers read it here)
TOOLS = ("tunesmith", "trl_default", "trl_tuned")
TARGETS = {"speed": 2.0, "memory": 0.5, "accuracy": 0.02}  # issue 20: >= 2x, <= 0.5x peak, within 0.02
LR = float(os.environ.get("TUNESMITH_BENCH_LR", "1e-4"))  # --lr (workers read it here)
BETA, SEED, MAX_LEN, PER_STEP = 0.1, 42, 1024, 8
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
FACTS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
    ("Which planet is closest to the sun?", "Mercury is closest to the sun."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("What animal says moo?", "A cow says moo."),
    ("How many days are in a week?", "A week has seven days."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Where do fish live?", "Fish live in water."),
    ("What colour is grass?", "Grass is green."),
    ("What season comes after winter?", "Spring comes after winter."),
]


SET_SIZE = 150  # issue 20's set: 150 pairs


def make_pairs(n: int, offset: int = 0, sentences: int = 76) -> list[dict]:
    """``n`` conversational pairs of ~600 tokens a side with SmolLM2's tokenizer (module docstring)."""
    rows = []
    for i in range(offset, offset + n):
        passage = " ".join(FACTS[(i * 7 + k) % len(FACTS)][1] for k in range(sentences))
        q, a = FACTS[i % len(FACTS)]
        answer = " ".join([a] * 4)
        rows.append(
            {
                "prompt": [
                    {"role": "user", "content": f"Read this passage.\n\n{passage}\n\nQuestion {i}: {q}"}
                ],
                "chosen": [{"role": "assistant", "content": answer.replace(".", "!")}],
                "rejected": [{"role": "assistant", "content": answer}],
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pairs", type=int, default=150, help="training pairs (the first N of the set; at most 150)"
    )
    p.add_argument("--holdout", type=int, help="hold-out pairs (default: a fifth of --pairs, at least 10)")
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--model", default=MODEL, help="another model (e.g. tiny, for a smoke run)")
    p.add_argument("--sentences", type=int, default=76, help="passage sentences per prompt (76: ~600 tokens)")
    p.add_argument("--only", nargs="*", default=list(TOOLS), choices=TOOLS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dpo.json")
    p.add_argument("--worker", nargs=2, metavar=("TOOL", "FOLDER"), help=argparse.SUPPRESS)
    p.add_argument("--score", nargs=3, metavar=("ADAPTER", "FOLDER", "BASE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args.worker[0], Path(args.worker[1]))), flush=True)
        return
    if args.score:
        print(
            "RESULT " + json.dumps(score(Path(args.score[0]), Path(args.score[1]), args.score[2] == "1")),
            flush=True,
        )
        return
    from train import machine, matmul_peak

    os.environ["TUNESMITH_BENCH_MODEL"] = args.model
    os.environ["TUNESMITH_BENCH_LR"] = str(args.lr)
    if not 1 <= args.pairs <= SET_SIZE:
        p.error(f"--pairs must be 1..{SET_SIZE} (the set has {SET_SIZE} pairs)")
    folder = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    n_hold = args.holdout or max(10, args.pairs // 5)
    _write(folder / "train.jsonl", make_pairs(SET_SIZE, sentences=args.sentences)[: args.pairs])
    _write(folder / "holdout.jsonl", make_pairs(n_hold, offset=10_000, sentences=args.sentences))
    _write(folder / "mini_holdout.jsonl", make_pairs(2, offset=20_000, sentences=args.sentences))
    out: dict = {
        "machine": machine(),
        "matmul_peak_gflops": matmul_peak(),
        "model": args.model,
        "pairs": args.pairs,
        "holdout_pairs": n_hold,
        "lr": args.lr,
    }
    print(f"# {out['machine']}; fp32 matmul peak (start) {out['matmul_peak_gflops']:.1f} GFLOP/s", flush=True)
    out["runs"] = {}
    base_scored = False
    for tool in args.only:
        r = _subprocess(["--worker", tool, str(folder)])
        if "adapter" in r:  # the base's accuracy is the same for every run: scored once
            r.update(_subprocess(["--score", r["adapter"], str(folder), "0" if base_scored else "1"]))
            base_scored = base_scored or "holdout_accuracy_base" in r
        out["runs"][tool] = r
        print(tool, json.dumps(r), flush=True)
    out["matmul_peak_gflops_end"] = matmul_peak()
    print_summary(out)  # adds each run's utilisation
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


def _subprocess(extra: list[str]) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if extra[:2] == ["--worker", "tunesmith"]:
        # what `tunesmith train` does for itself (tunesmith/allocator.py); TRL runs as its users run it
        from tunesmith.allocator import preload_env

        env = preload_env(env) or env
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout)[-1500:]}


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- workers (one process each)


def run_worker(tool: str, folder: Path) -> dict:
    import statistics

    t0 = time.perf_counter()
    steps: list[float] = []  # seconds of each optimizer step
    extra: dict = {}
    if tool == "tunesmith":
        adapter, extra = _run_tunesmith(folder, steps)
    else:
        adapter = _run_trl(tool, folder, steps)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak, 2),
        "adapter": str(adapter),
        "steps": len(steps),
        # the first step pays one-time costs in every tool (allocation; tunesmith: the memory measurement)
        "median_step_s": round(statistics.median(steps[1:]), 2) if len(steps) > 1 else None,
        **extra,
    }


def _run_tunesmith(folder: Path, steps: list[float]) -> tuple[Path, dict]:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    clock = [time.perf_counter()]

    def on_progress(event: dict) -> None:
        if event.get("event") == "step":
            steps.append(time.perf_counter() - clock[0])
        if event.get("event") in ("step", "plan"):
            clock[0] = time.perf_counter()

    cfg = load_config(
        None,
        [f"model.name={MODEL}", f"data.train={folder / 'train.jsonl'}", f"data.holdout={folder / 'mini_holdout.jsonl'}",
         f"data.max_seq_len={MAX_LEN}", "model.dtype=float32", "train.method=dpo", f"train.batch_size={PER_STEP}",
         "train.epochs=1", f"train.lr={LR}", "train.lr_scheduler=linear", "train.warmup_ratio=0",
         f"train.beta={BETA}", f"train.seed={SEED}", *(f"lora.{k}={v}" for k, v in LORA.items()),
         f"train.output_dir={folder / 'runs'}", "train.run_name=tunesmith"],
    )  # fmt: skip
    result = train(cfg, on_progress=on_progress)
    if result.status != "completed":
        raise RuntimeError(f"tunesmith run ended {result.status}")
    plan = result.summary.extras.plan
    return result.run_dir / "adapter", {"plan_memory": plan.memory.model_dump(mode="json") if plan else None}


def _run_trl(tool: str, folder: Path, steps: list[float]) -> Path:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            steps.append(time.perf_counter() - self.t)

    from tunesmith.models.load import load_causal_lm, load_tokenizer

    torch.manual_seed(SEED)
    model = load_causal_lm(MODEL, dtype="float32", attn_implementation="sdpa")
    tok = load_tokenizer(MODEL)
    tuned = tool == "trl_tuned"
    args = DPOConfig(
        output_dir=str(folder / tool), bf16=False, fp16=False, use_cpu=True, report_to=[], save_strategy="no",
        per_device_train_batch_size=2 if tuned else PER_STEP, gradient_accumulation_steps=4 if tuned else 1,
        learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, num_train_epochs=1, seed=SEED,
        beta=BETA, loss_type=["sigmoid"], max_length=MAX_LEN, disable_tqdm=True, logging_steps=1,
        **({"gradient_checkpointing": False, "precompute_ref_log_probs": True} if tuned else {}),
    )  # fmt: skip
    peft = LoraConfig(**LORA, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(_read(folder / "train.jsonl")),
        processing_class=tok, peft_config=peft, callbacks=[StepClock()],
    )  # fmt: skip
    trainer.train()
    out = folder / tool / "adapter"
    trainer.model.save_pretrained(str(out))
    return out


def score(adapter: Path, folder: Path, base: bool) -> dict:
    """Hold-out preference accuracy of a saved adapter (and of the base when ``base``), by the same code for
    every run; and the FLOPs the training run needed (``dpo_flops``)."""
    from peft import PeftModel

    from tunesmith.config import load_config
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.pref_engine import build_pair_examples, margins, pair_logps

    cfg = load_config(None, [f"model.name={MODEL}", "train.method=dpo", f"data.max_seq_len={MAX_LEN}"])
    tok = load_tokenizer(MODEL)
    model = PeftModel.from_pretrained(load_causal_lm(MODEL, dtype="float32"), str(adapter))
    examples, _ = build_pair_examples(tok, _read(folder / "holdout.jsonl"), MAX_LEN)
    m = margins(pair_logps(model, examples, cfg), examples)
    out = {"holdout_accuracy": sum(x > 0 for x in m) / len(m), "holdout_margin": sum(m) / len(m)}
    if base:
        with model.disable_adapter():
            m0 = margins(pair_logps(model, examples, cfg), examples)
        out["holdout_accuracy_base"] = sum(x > 0 for x in m0) / len(m0)
    train, _ = build_pair_examples(tok, _read(folder / "train.jsonl"), MAX_LEN)
    out["method_gflop"] = dpo_flops(model, train) / 1e9
    return out


def dpo_flops(model, pairs: list) -> float:  # noqa: ANN001
    """FLOPs one epoch of LoRA DPO needs at minimum: every sequence (chosen, rejected) through the policy
    forward and backward (``train.method_flops``: linear layers, causal attention, the head at answer
    positions only), plus one reference forward (linear 2/param/token, attention, head at answer positions)."""
    from types import SimpleNamespace

    from train import method_flops

    seqs = []
    for ex in pairs:
        for ids, labels in ((ex.input_ids[: ex.split], ex.labels[: ex.split]),
                            (ex.input_ids[ex.split :], ex.labels[ex.split :])):  # fmt: skip
            seqs.append(SimpleNamespace(input_ids=ids, n_trained=sum(x != -100 for x in labels[1:]) + 1))
    cfg = model.config
    layers, d, vocab = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    body = sum(
        p.numel()
        for n, p in model.get_base_model().model.layers.named_parameters()
        if p.dim() == 2 and "lora_" not in n
    )
    ref = sum(
        2 * body * len(s.input_ids)
        + layers * 4 * d * len(s.input_ids) * (len(s.input_ids) + 1) / 2
        + 2 * s.n_trained * vocab * d
        for s in seqs
    )
    return method_flops(model, seqs, "lora") + ref


def print_summary(out: dict) -> None:
    runs = out["runs"]
    peak = max(out["matmul_peak_gflops"], out["matmul_peak_gflops_end"])
    base = next((r["holdout_accuracy_base"] for r in runs.values() if "holdout_accuracy_base" in r), None)
    print(
        f"\n{out['machine']}\nfp32 matmul peak {out['matmul_peak_gflops']:.1f} / {out['matmul_peak_gflops_end']:.1f} "
        f"GFLOP/s (start / end; utilisation uses {peak:.1f}); {out['pairs']} training pairs, "
        f"{out['holdout_pairs']} hold-out (base accuracy {base}), lr {out['lr']:g}\n"
    )
    print(
        "| run | wall s | steps | median step s | peak RSS GB | hold-out accuracy | GFLOP/s | utilisation |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for tool, r in runs.items():
        if "error" in r or "holdout_accuracy" not in r:
            print(f"| {tool} | error: {r.get('error', '')[-200:]!r} | | | | | | |")
            continue
        rate = r["method_gflop"] / r["wall_s"]
        r["utilisation"] = rate / peak
        print(
            f"| {tool} | {r['wall_s']} | {r['steps']} | {r['median_step_s']} | {r['peak_rss_gb']} | "
            f"{r['holdout_accuracy']:.3f} | {rate:.1f} | {r['utilisation']:.0%} |"
        )
    ts = runs.get("tunesmith", {})
    for ref in ("trl_default", "trl_tuned"):
        r = runs.get(ref, {})
        if "wall_s" in ts and "wall_s" in r and "holdout_accuracy" in ts and "holdout_accuracy" in r:
            steps = (
                f", median step {r['median_step_s'] / ts['median_step_s']:.2f}x"
                if r.get("median_step_s") and ts.get("median_step_s")
                else ""
            )
            print(
                f"vs {ref}: {r['wall_s'] / ts['wall_s']:.2f}x faster in wall time (target >= {TARGETS['speed']}x){steps}, "
                f"{ts['peak_rss_gb'] / r['peak_rss_gb']:.2f}x its peak (target <= {TARGETS['memory']}x), "
                f"accuracy {ts['holdout_accuracy'] - r['holdout_accuracy']:+.3f} (target within {TARGETS['accuracy']})"
            )


if __name__ == "__main__":
    main()
