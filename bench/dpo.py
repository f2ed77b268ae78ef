"""DPO benchmark: tunesmith's engine vs TRL's ``DPOTrainer`` (its defaults, and tuned by hand) on the same pairs.

Same model (SmolLM2-135M-Instruct, **fp32 on CPU for every run**), same pairs (``--pairs`` training pairs of
~600 tokens a side, plus a hold-out a fifth that size: a passage, a question, and an answer paragraph whose
chosen side ends its sentences with '!' and rejected side with '.'), same LoRA (r=16, alpha 32, all linear
layers, no dropout: TRL disables dropout by default), same optimisation (8 pairs per optimizer step, 1 epoch,
lr 1e-4 linear to 0, no warmup, beta 0.1, sigmoid loss, seed 42), ``max_length`` 1024:

- ``tunesmith``: ``tunesmith.train.api.train(cfg)`` with ``method: dpo`` and its defaults (pairs packed,
  answer-only log-probs, reference pass once, memory-planned micro-batches).
- ``trl_default``: ``DPOConfig`` defaults for everything else (8 padded pairs per micro-batch, gradient
  checkpointing on, reference log-probs recomputed every step); only ``bf16=False`` is forced.
- ``trl_tuned``: 2 pairs per micro-batch x 4 accumulation, gradient checkpointing off, reference log-probs
  precomputed once (``precompute_ref_log_probs``).

Each run is its own subprocess, timed end to end (model load, data preparation, training, saving), with its
peak RSS from ``resource.getrusage``. Hold-out preference accuracy (share of hold-out pairs whose summed answer
log-prob margin is positive) is computed afterwards for every run's saved adapter by the same code
(``tunesmith.train.pref_engine.pair_logps``), in its own process. The fp32 matmul peak is measured at the start.

    flock /tmp/ts-cpu.lock python bench/dpo.py [--pairs 150] [--only tunesmith trl_tuned]
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
LR, BETA, SEED, MAX_LEN, PER_STEP = 1e-4, 0.1, 42, 1024, 8
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
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--model", default=MODEL, help="another model (e.g. tiny, for a smoke run)")
    p.add_argument("--sentences", type=int, default=76, help="passage sentences per prompt (76: ~600 tokens)")
    p.add_argument("--only", nargs="*", default=list(TOOLS), choices=TOOLS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dpo.json")
    p.add_argument("--worker", nargs=2, metavar=("TOOL", "FOLDER"), help=argparse.SUPPRESS)
    p.add_argument("--score", nargs=2, metavar=("ADAPTER", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args.worker[0], Path(args.worker[1]))), flush=True)
        return
    if args.score:
        print("RESULT " + json.dumps(score(Path(args.score[0]), Path(args.score[1]))), flush=True)
        return
    from train import machine, matmul_peak

    os.environ["TUNESMITH_BENCH_MODEL"] = args.model
    folder = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    _write(folder / "train.jsonl", make_pairs(args.pairs, sentences=args.sentences))
    _write(
        folder / "holdout.jsonl",
        make_pairs(max(10, args.pairs // 5), offset=10_000, sentences=args.sentences),
    )
    out: dict = {
        "machine": machine(),
        "matmul_peak_gflops": matmul_peak(),
        "model": args.model,
        "pairs": args.pairs,
    }
    out["runs"] = {}
    for tool in args.only:
        r = _subprocess(["--worker", tool, str(folder)])
        if "adapter" in r:
            r.update(_subprocess(["--score", r["adapter"], str(folder)]))
        out["runs"][tool] = r
        print(tool, json.dumps(r), flush=True)
    out["matmul_peak_gflops_end"] = matmul_peak()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print_summary(out)


def _subprocess(extra: list[str]) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
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
    t0 = time.perf_counter()
    adapter = _run_tunesmith(folder) if tool == "tunesmith" else _run_trl(tool, folder)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"wall_s": round(wall, 1), "peak_rss_gb": round(peak, 2), "adapter": str(adapter)}


def _run_tunesmith(folder: Path) -> Path:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    cfg = load_config(
        None,
        [f"model.name={MODEL}", f"data.train={folder / 'train.jsonl'}", f"data.holdout={folder / 'holdout.jsonl'}",
         f"data.max_seq_len={MAX_LEN}", "model.dtype=float32", "train.method=dpo", f"train.batch_size={PER_STEP}",
         "train.epochs=1", f"train.lr={LR}", "train.lr_scheduler=linear", "train.warmup_ratio=0",
         f"train.beta={BETA}", f"train.seed={SEED}", *(f"lora.{k}={v}" for k, v in LORA.items()),
         f"train.output_dir={folder / 'runs'}", "train.run_name=tunesmith"],
    )  # fmt: skip
    result = train(cfg)
    if result.status != "completed":
        raise RuntimeError(f"tunesmith run ended {result.status}")
    return result.run_dir / "adapter"


def _run_trl(tool: str, folder: Path) -> Path:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

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
        processing_class=tok, peft_config=peft,
    )  # fmt: skip
    trainer.train()
    out = folder / tool / "adapter"
    trainer.model.save_pretrained(str(out))
    return out


def score(adapter: Path, folder: Path) -> dict:
    """Hold-out preference accuracy of a saved adapter, by the same code for every run."""
    from peft import PeftModel

    from tunesmith.config import load_config
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.pref_engine import build_pair_examples, margins, pair_logps

    cfg = load_config(None, [f"model.name={MODEL}", "train.method=dpo", f"data.max_seq_len={MAX_LEN}"])
    tok = load_tokenizer(MODEL)
    model = PeftModel.from_pretrained(load_causal_lm(MODEL, dtype="float32"), str(adapter))
    examples, _ = build_pair_examples(tok, _read(folder / "holdout.jsonl"), MAX_LEN)
    m = margins(pair_logps(model, examples, cfg), examples)
    with model.disable_adapter():
        m0 = margins(pair_logps(model, examples, cfg), examples)
    return {
        "holdout_accuracy": sum(x > 0 for x in m) / len(m),
        "holdout_accuracy_base": sum(x > 0 for x in m0) / len(m0),
        "holdout_margin": sum(m) / len(m),
    }


def print_summary(out: dict) -> None:
    runs = out["runs"]
    print(
        f"\n{out['machine']}\nfp32 matmul peak {out['matmul_peak_gflops']:.1f} GFLOP/s; {out['pairs']} pairs\n"
    )
    print("| run | wall s | peak RSS GB | hold-out accuracy (base) |\n| --- | ---: | ---: | ---: |")
    for tool, r in runs.items():
        if "error" in r:
            print(f"| {tool} | error: {r['error'][-200:]!r} | | |")
            continue
        print(
            f"| {tool} | {r['wall_s']} | {r['peak_rss_gb']} | {r['holdout_accuracy']:.3f} ({r['holdout_accuracy_base']:.3f}) |"
        )
    ts = runs.get("tunesmith", {})
    for ref in ("trl_default", "trl_tuned"):
        r = runs.get(ref, {})
        if "wall_s" in ts and "wall_s" in r and "holdout_accuracy" in ts and "holdout_accuracy" in r:
            print(
                f"vs {ref}: {r['wall_s'] / ts['wall_s']:.2f}x faster (target >= {TARGETS['speed']}x), "
                f"{ts['peak_rss_gb'] / r['peak_rss_gb']:.2f}x its peak (target <= {TARGETS['memory']}x), "
                f"accuracy {ts['holdout_accuracy'] - r['holdout_accuracy']:+.3f} (target within {TARGETS['accuracy']})"
            )


if __name__ == "__main__":
    main()
