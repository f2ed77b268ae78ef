"""Serving benchmark: 8 concurrent clients for 60 s vs. the same requests sent one at a time, against
`tunesmith serve` on loopback with the real embedded SmolLM2-135M (fp32, CPU, greedy).

Both phases use the unchanged openai SDK over HTTP and draw prompts from the same list in the same order,
with the same settings (temperature 0, max_tokens fixed), so the only difference is concurrency: the
sequential phase is the reference ("one at a time"), the concurrent phase shows what request batching buys.

    flock /tmp/tunesmith-heavy.lock python bench/serve.py [--duration 60] [--clients 8] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROMPTS = [
    "My invoice shows the wrong amount. What should I do?",
    "How do I reset my password?",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Give me two tips for writing clear emails.",
    "Summarise: the meeting moved from Monday to Wednesday at 10.",
    "Translate 'good morning' into Spanish.",
    "Is 17 a prime number? Answer briefly.",
    "Name three fruits that are red.",
    "What does CPU stand for?",
    "Suggest a title for a blog post about budgeting.",
    "My package has not arrived yet. Can you help?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds per phase.")
    ap.add_argument("--clients", type=int, default=8, help="Concurrent clients in the concurrent phase.")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request.")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="Model to query.")
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    args = ap.parse_args()

    port = _free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="tunesmith-bench-serve-"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunesmith",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--concurrency",
            "0",
            "--max-batch",
            str(args.clients),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_up(base)
        print(
            f"tunesmith serve on {base}: model {args.model}, fp32 on CPU, greedy, max_tokens={args.max_tokens}, "
            f"torch threads per process = {os.cpu_count()}"
        )
        _ask(base, args.model, PROMPTS[0], args.max_tokens)  # load the model once, outside the timings
        seq = _phase(base, args, clients=1)
        conc = _phase(base, args, clients=args.clients)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = [("one at a time (reference)", seq), (f"{args.clients} concurrent clients", conc)]
    print(
        f"\n{'phase':28} {'requests':>8} {'errors':>6} {'req/s':>7} {'tok/s':>7} {'p50 ms':>8} {'p95 ms':>8}"
    )
    for name, r in rows:
        print(
            f"{name:28} {r['requests']:8d} {r['errors']:6d} {r['req_per_s']:7.2f} {r['tokens_per_s']:7.1f} "
            f"{r['p50_ms']:8.0f} {r['p95_ms']:8.0f}"
        )
    ratio = conc["req_per_s"] / seq["req_per_s"] if seq["req_per_s"] else float("nan")
    print(
        f"\nthroughput ratio (concurrent / one at a time): {ratio:.2f}x; "
        f"p95 latency {conc['p95_ms']:.0f} ms vs {seq['p95_ms']:.0f} ms ({conc['p95_ms'] / seq['p95_ms']:.2f}x)"
    )
    print(f"mean batch size seen by the server: {conc['mean_batch']:.2f}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "sequential": seq,
                    "concurrent": conc,
                    "throughput_ratio": ratio,
                    "settings": vars(args) | {"out": str(args.out)},
                },
                indent=2,
            )
        )
    if conc["errors"] or seq["errors"]:
        sys.exit(1)


def _phase(base: str, args: argparse.Namespace, clients: int) -> dict:
    latencies: list[float] = []
    tokens = [0]
    errors = [0]
    lock = threading.Lock()
    counter = [0]
    deadline = time.monotonic() + args.duration
    batches_before = _batches(base)

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                prompt = PROMPTS[counter[0] % len(PROMPTS)]
                counter[0] += 1
            t0 = time.perf_counter()
            try:
                n = _ask(base, args.model, prompt, args.max_tokens)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors[0] += 1
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)
                tokens[0] += n

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": errors[0],
        "wall_s": round(wall, 1),
        "req_per_s": len(lat) / wall,
        "tokens_per_s": tokens[0] / wall,
        "p50_ms": statistics.median(lat) if lat else 0.0,
        "p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0,
        "mean_batch": _mean_batch(base, batches_before),
    }


_CLIENTS: dict[str, object] = {}


def _client(base: str):
    import openai

    tid = f"{base}-{threading.get_ident()}"
    if tid not in _CLIENTS:
        _CLIENTS[tid] = openai.OpenAI(base_url=base, api_key="bench", max_retries=0, timeout=600)
    return _CLIENTS[tid]


def _ask(base: str, model: str, prompt: str, max_tokens: int) -> int:
    r = _client(base).chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=max_tokens
    )
    return r.usage.completion_tokens


def _batches(base: str) -> list[int]:
    import httpx2

    return httpx2.get(base.removesuffix("/v1") + "/v1/tunesmith/engine", timeout=10).json()["batches"]


def _mean_batch(base: str, before: list[int]) -> float:
    sizes = _batches(base)[len(before) :]
    return sum(sizes) / len(sizes) if sizes else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(base: str, timeout: float = 120) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{base}/models", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {base} did not come up in {timeout:.0f} s")


if __name__ == "__main__":
    main()
