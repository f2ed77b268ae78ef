"""RL benchmark: tunesmith's PPO and GRPO steps per minute beside TRL's GRPOTrainer and RLOOTrainer.

Same model (SmolLM2-135M-Instruct, **fp32 on CPU for every run**: TRL's ``bf16=False`` and ``use_cpu`` are
forced), same prompts (``--prompts`` short support questions, generated here), same reward (a grader file,
``string_check``: does the answer contain "help", scored by ``tunesmith.graders`` for every run), same LoRA
(r=8, alpha 16, all linear layers, no dropout), same sampling (temperature 1, ``--tokens`` new tokens at
most), same optimisation (``--lr`` constant, no warmup, clip 1.0, KL coefficient beta 0.05, seed 42) and the
same number of sampled answers per step (``--answers``, 8):

- ``tunesmith_ppo``: ``method: ppo`` (train/ppo.py): 8 prompts x 1 answer per step, value head, GAE, 2 PPO
  epochs over the batch (its defaults).
- ``tunesmith_grpo``: ``method: grpo`` (train/grpo.py, TRL's GRPOTrainer with tunesmith's settings): 2
  prompts x 4 answers.
- ``trl_grpo``: ``GRPOTrainer`` built here directly, its defaults except the settings above.
- ``trl_rloo``: ``RLOOTrainer`` likewise (what ``method: rloo`` runs).

Each run is its own subprocess; each step's wall time is taken at the step's end (tunesmith: its progress
events; TRL: a ``TrainerCallback``); steps per minute = 60 / the median step time, the first step excluded
(warm-up). Peak RSS is the subprocess's (``resource.getrusage``). Not the same work per step: PPO makes 2
optimisation passes and one extra forward (the value head rides on the policy's forward) where GRPO makes 1;
answers per minute is printed beside steps per minute.

    flock /tmp/ts-cpu.lock python bench/rl.py [--steps 6] [--only tunesmith_ppo trl_grpo] [--model tiny]
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

TOOLS = ("tunesmith_ppo", "tunesmith_grpo", "trl_grpo", "trl_rloo")
SEED, BETA, GENERATIONS = 42, 0.05, 4
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
GRADER = {"type": "string_check", "name": "helpful", "operation": "ilike",
          "input": "{{sample.output_text}}", "reference": "help"}  # fmt: skip
TOPICS = ["billing", "login", "invoice", "refund", "password", "crash", "export", "account", "order",
          "shipping", "upgrade", "email", "api key", "invoice date", "two-factor", "data export"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default="smollm2-135m-instruct", help="another model (e.g. tiny, for a smoke run)"
    )
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--answers", type=int, default=8, help="sampled answers per step")
    p.add_argument("--tokens", type=int, default=32, help="max new tokens per answer")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--only", nargs="*", default=list(TOOLS), choices=TOOLS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rl.json")
    p.add_argument("--worker", nargs=2, metavar=("TOOL", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        tool, folder = args.worker
        settings = json.loads((Path(folder) / "settings.json").read_text())
        print(json.dumps(run_worker(tool, Path(folder), settings)))
        return
    settings = {k: getattr(args, k) for k in ("model", "steps", "answers", "tokens", "prompts", "lr")}
    print(
        f"RL benchmark on {args.model}, fp32 on CPU for every run (TRL: bf16=False, use_cpu=True); {settings}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        folder = Path(tmp)
        write_inputs(folder, settings)
        for tool in args.only:
            out = subprocess.run([sys.executable, __file__, "--worker", tool, str(folder)],
                                 capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"{tool} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print_row(rows[-1], settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": settings,
            "load_average": os.getloadavg(), "cpus": os.cpu_count()}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    base = {r["tool"]: r["steps_per_min"] for r in rows}
    for ours, ref in (
        ("tunesmith_grpo", "trl_grpo"),
        ("tunesmith_ppo", "trl_grpo"),
        ("tunesmith_ppo", "trl_rloo"),
    ):
        if ours in base and ref in base:
            print(f"{ours} / {ref} steps per minute: {base[ours] / base[ref]:.2f}x")
    print(f"written {args.out}")


def write_inputs(folder: Path, s: dict) -> None:
    rows = [{"messages": [{"role": "user", "content": f"A customer asks about {TOPICS[i % len(TOPICS)]} "
                          f"(ticket {i}). Reply in one sentence."}]} for i in range(s["prompts"])]  # fmt: skip
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "grader.json").write_text(json.dumps(GRADER))
    (folder / "settings.json").write_text(json.dumps(s))


def print_row(r: dict, s: dict) -> None:
    print(f"{r['tool']:>15}: {r['steps_per_min']:6.2f} steps/min, {r['answers_per_min']:6.1f} answers/min "
          f"(median step {r['median_step_s']:.2f} s over {len(r['step_s']) - 1} steps after the first; "
          f"first {r['step_s'][0]:.2f} s), mean reward first/last step {r['reward_first']:.3f}/"
          f"{r['reward_last']:.3f}, wall {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip


# --------------------------------------------------------------------------- workers (own process each)


def run_worker(tool: str, folder: Path, s: dict) -> dict:
    t0 = time.perf_counter()
    marks: list[float] = []
    rewards: list[float] = []
    if tool.startswith("tunesmith"):
        _run_tunesmith(tool.removeprefix("tunesmith_"), folder, s, marks, rewards)
    else:
        _run_trl(tool.removeprefix("trl_"), folder, s, marks, rewards)
    steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    median = statistics.median(steps[1:] or steps)
    return {
        "tool": tool, "step_s": steps, "median_step_s": median, "steps_per_min": 60 / median,
        "answers_per_min": 60 / median * s["answers"], "reward_first": rewards[0] if rewards else float("nan"),
        "reward_last": rewards[-1] if rewards else float("nan"), "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def _run_tunesmith(method: str, folder: Path, s: dict, marks: list[float], rewards: list[float]) -> None:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    per_step = s["answers"]  # ppo: prompts x 1 answer; grpo: answers, in groups of num_generations
    cfg = load_config(None, [
        f"model.name={s['model']}", "model.dtype=float32", f"train.method={method}", f"train.prompts={folder / 'prompts.jsonl'}",
        f"train.grader={folder / 'grader.json'}", f"train.max_steps={s['steps'] + 1}", f"train.batch_size={per_step}",
        f"train.lr={s['lr']}", "train.lr_scheduler=constant", "train.warmup_ratio=0", f"train.beta={BETA}",
        f"train.max_completion_length={s['tokens']}", f"train.seed={SEED}", f"lora.r={LORA['r']}",
        f"lora.lora_alpha={LORA['lora_alpha']}", f"train.output_dir={folder / ('runs-' + method)}",
        *([f"train.num_generations={GENERATIONS}"] if method == "grpo" else []),
    ])  # fmt: skip

    def on_progress(event: dict) -> None:
        if event["event"] in ("start", "step"):
            marks.append(time.perf_counter())
        if event["event"] == "step" and event.get("reward") is not None:
            rewards.append(float(event["reward"]))

    train(cfg, on_progress=on_progress)


def _run_trl(kind: str, folder: Path, s: dict, marks: list[float], rewards: list[float]) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from tunesmith.graders import load_grader
    from tunesmith.models.load import load_causal_lm, load_tokenizer

    torch.manual_seed(SEED)
    grader = load_grader(folder / "grader.json")

    def reward(prompts, completions, **_):  # noqa: ANN001, ANN003, ANN202
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return grader.grade_batch([{"output_text": t} for t in texts], [{} for _ in texts])

    rows = [json.loads(line) for line in (folder / "prompts.jsonl").read_text().splitlines()]
    data = Dataset.from_list([{"prompt": r["messages"]} for r in rows])
    Config, Trainer = (GRPOConfig, GRPOTrainer) if kind == "grpo" else (RLOOConfig, RLOOTrainer)
    args = Config(
        output_dir=str(folder / f"trl-{kind}"), per_device_train_batch_size=s["answers"], num_generations=GENERATIONS,
        max_completion_length=s["tokens"], temperature=1.0, beta=BETA, learning_rate=s["lr"],
        lr_scheduler_type="constant", warmup_steps=0, max_steps=s["steps"] + 1, seed=SEED, bf16=False, fp16=False,
        use_cpu=True, save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=1, log_completions=False,
    )  # fmt: skip

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001, ANN003, ANN201
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    trainer = Trainer(
        model=load_causal_lm(s["model"], dtype="float32"), reward_funcs=reward, args=args, train_dataset=data,
        processing_class=load_tokenizer(s["model"]),
        peft_config=LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", **LORA),
        callbacks=[Marks()],
    )  # fmt: skip
    trainer.train()


if __name__ == "__main__":
    main()
