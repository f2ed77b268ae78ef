"""Benchmark: `tunesmith data check` on a generated 100,000-line chat file (time and peak memory).

    python bench/data_check.py [--n 100000] [--repeats 1] [--no-reference]

What runs, in one process tree:
1. a seeded generator writes N chat examples (English words with Zipf frequencies, 8-90-word questions,
   5-120-word answers, a system prompt on a third of them, a few duplicates, near-duplicates, a
   contradiction, PII and over-long examples so every check has work to do);
2. tunesmith: the real CLI in a subprocess, `tunesmith data check FILE --model smollm2-135m-instruct
   --json OUT` (every check: errors, duplicates, near-duplicates, contradictions, labels, lengths, PII,
   diversity, token stats with the chat template, truncation). Wall time and the child's peak RSS;
3. reference: what one writes with the Hugging Face stack to get just the token lengths: `datasets`
   load_dataset("json") + `map(apply_chat_template, tokenize=True, batched=True)` on the same file, same
   tokenizer (no quality checks at all). Tokenizer-only work, so no dtype applies (no model is run: fp32/bf16
   is irrelevant here); printed for scale;
4. near-duplicate scaling: `find_groups` on N/10 and N texts (a ratio near 10 means linear, 100 quadratic).
Medians over --repeats; run under `flock /tmp/tunesmith-heavy.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = _english_words()
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf-like, like real text
    cum = list(_accumulate(weights))
    rows: list[str] = []
    for i in range(n):
        q = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 90))) + "?"
        a = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(5, 120))) + "."
        if i % 1000 == 7:
            q += f" my email is user{i}@example.com"
        if i % 5000 == 11:
            a = " ".join(rng.choices(vocab, cum_weights=cum, k=900))  # longer than max_seq_len
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 3 == 0:
            msgs.insert(0, {"role": "system", "content": "You are a concise support assistant."})
        rows.append(json.dumps({"messages": msgs}))
    for j in range(0, n, 997):  # duplicates, near-duplicates and contradictions
        rows[(j + 500) % n] = rows[j]
        src = json.loads(rows[j + 1])
        src["messages"][-1]["content"] += " thanks"
        rows[(j + 600) % n] = json.dumps(src)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _english_words() -> list[str]:
    """Whole English words from the embedded MiniLM's WordPiece vocabulary (offline, and not the tokenizer
    being measured, so SmolLM2 splits them as it splits real text: ~1.45 tokens per word)."""
    from tunesmith.models.load import minilm_dir

    words = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in words if w.isascii() and w.isalpha() and len(w) > 1]


def _accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


def run_tunesmith(path: Path, out: Path) -> tuple[float, float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "tunesmith",
        "data",
        "check",
        str(path),
        "--model",
        "smollm2-135m-instruct",
        "--json",
        str(out),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode not in (0, 1):
        raise SystemExit(f"tunesmith failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    rss_mb = max(peak, before) / 1024  # ru_maxrss is in KiB on Linux; the largest child so far
    return seconds, rss_mb, json.loads(out.read_text())


def run_reference(path: Path) -> tuple[float, int]:
    from datasets import disable_progress_bars, load_dataset

    from tunesmith.models.load import load_tokenizer

    disable_progress_bars()  # a bar per batch would bury the figures
    tok = load_tokenizer("smollm2-135m-instruct")
    t0 = time.perf_counter()
    ds = load_dataset("json", data_files=str(path), split="train", keep_in_memory=True)

    def lengths(batch):
        ids = tok.apply_chat_template(batch["messages"], tokenize=True, return_dict=False)
        return {"n_tokens": [len(x) for x in ids]}

    ds = ds.map(lengths, batched=True, batch_size=1000, remove_columns=ds.column_names, keep_in_memory=True)
    total = sum(ds["n_tokens"])
    return time.perf_counter() - t0, total


def neardup_scaling(path: Path, n: int) -> tuple[float, float]:
    from tunesmith.data.neardup import find_groups

    texts = [json.loads(x)["messages"][-1]["content"] for x in path.read_text().splitlines()]
    t0 = time.perf_counter()
    find_groups(texts[: n // 10])
    small = time.perf_counter() - t0
    t0 = time.perf_counter()
    find_groups(texts)
    return small, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        t0 = time.perf_counter()
        generate(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.n:,} chat lines ({size_mb:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        runs = [run_tunesmith(path, Path(tmp) / f"r{i}.json") for i in range(args.repeats)]
        secs = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        report = runs[-1][2]
        st = report["stats"]
        print(f"tunesmith data check: median {secs:.1f} s over {args.repeats} run(s), peak RSS {peak:.0f} MB "
              f"({args.n / secs:,.0f} examples/s); target < 30 s: {'MET' if secs < 30 else 'NOT MET'}")  # fmt: skip
        print(
            f"  warnings: {', '.join(sorted({w['code'] for w in report['warnings']}))}; errors: {len(report['errors'])}"
        )
        print(f"  tokens/example p50={st['tokens_per_example']['p50']} p99={st['tokens_per_example']['p99']} "
              f"(from {st['tokens_sampled_from']:,} sampled), truncated={st['truncated_examples']}, "
              f"tokens/epoch~{st['train_tokens_per_epoch']:,}")  # fmt: skip
        if not args.no_reference:
            ref_s, ref_tokens = run_reference(path)
            print(f"reference (datasets.map + apply_chat_template, token lengths only, tokenizer-only: no dtype): "
                  f"{ref_s:.1f} s for {ref_tokens:,} tokens; tunesmith full check / reference = {secs / ref_s:.2f}x")  # fmt: skip
        small, full = neardup_scaling(path, args.n)
        print(f"near-duplicate pass: {small:.2f} s for {args.n // 10:,} texts, {full:.2f} s for {args.n:,} "
              f"(x{full / small:.1f} for 10x the data; quadratic would be x100)")  # fmt: skip


if __name__ == "__main__":
    main()
