"""Serving benchmark: 8 concurrent clients for 60 s vs. the same requests sent one at a time, against
`tunesmith serve` on loopback with the real embedded SmolLM2-135M (fp32, CPU, greedy).

Both phases use the unchanged openai SDK over HTTP and draw prompts from the same list in the same order,
with the same settings (temperature 0, max_tokens fixed), so the only difference is concurrency: the
sequential phase is the reference ("one at a time"), the concurrent phase shows what request batching buys.

The hostile phase repeats the concurrent phase while one more client, every ``--hostile-every`` seconds,
sends a chat request with a 1 MB prompt over a raw socket and disconnects (``--hostile fits`` instead sends a
prompt that just fits the model's context, so it is accepted and prefilled, and disconnects after 1 s: the
cancellation path). The well-behaved clients' p95 latency with the hostile client is compared with the
concurrent phase without it (target: within 2x, 0 errors).

    flock /tmp/ts-cpu.lock python bench/serve.py [--duration 60] [--clients 8] [--max-tokens 32]
        [--hostile 1mb|fits|none] [--skip-sequential]
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
    ap.add_argument(
        "--hostile", choices=["1mb", "fits", "none"], default="1mb", help="The hostile phase's requests."
    )
    ap.add_argument("--hostile-every", type=float, default=5.0, help="Seconds between hostile requests.")
    ap.add_argument("--skip-sequential", action="store_true", help="Skip the one-at-a-time phase.")
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
        env={**os.environ, "TUNESMITH_API_KEY": "bench"},  # auth on, as a team server runs
    )
    hostile: dict = {}
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_up(base)
        print(
            f"tunesmith serve on {base}: model {args.model}, fp32 on CPU, greedy, max_tokens={args.max_tokens}, "
            f"torch threads per process = {os.cpu_count()}"
        )
        _ask(base, args.model, PROMPTS[0], args.max_tokens)  # load the model once, outside the timings
        seq = _phase(base, args, clients=1) if not args.skip_sequential else _empty()
        conc = _phase(base, args, clients=args.clients)
        if args.hostile != "none":
            body = _hostile_body(args.model, args.hostile)  # built before the phase's clock starts
            hostile = _phase(base, args, clients=args.clients, hostile=(port, args.hostile, body))
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = [("one at a time (reference)", seq), (f"{args.clients} concurrent clients", conc)]
    if hostile:
        rows.append((f"{args.clients} clients + hostile ({args.hostile})", hostile))
    print(
        f"\n{'phase':28} {'requests':>8} {'errors':>6} {'req/s':>7} {'tok/s':>7} {'p50 ms':>8} {'p95 ms':>8}"
    )
    for name, r in rows:
        print(
            f"{name:28} {r['requests']:8d} {r['errors']:6d} {r['req_per_s']:7.2f} {r['tokens_per_s']:7.1f} "
            f"{r['p50_ms']:8.0f} {r['p95_ms']:8.0f}"
        )
    ratio = conc["req_per_s"] / seq["req_per_s"] if seq["req_per_s"] else float("nan")
    if seq["requests"]:
        print(
            f"\nthroughput ratio (concurrent / one at a time): {ratio:.2f}x; p95 latency "
            f"{conc['p95_ms']:.0f} ms vs {seq['p95_ms']:.0f} ms ({conc['p95_ms'] / seq['p95_ms']:.2f}x)"
        )
    print(f"mean batch size seen by the server: {conc['mean_batch']:.2f}")
    if hostile:
        slow = hostile["p95_ms"] / conc["p95_ms"] if conc["p95_ms"] else float("nan")
        verdict = "within" if slow <= 2 and not hostile["errors"] else "NOT within"
        print(
            f"hostile client: {hostile['hostile_sent']} request(s) of {hostile['hostile_bytes']:,} bytes, each "
            f"followed by a disconnect; well-behaved p95 {hostile['p95_ms']:.0f} ms with it vs "
            f"{conc['p95_ms']:.0f} ms without ({slow:.2f}x, {verdict} the 2x target), "
            f"{hostile['errors']} error(s) for the well-behaved clients"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "sequential": seq,
                    "concurrent": conc,
                    "hostile": hostile,
                    "throughput_ratio": ratio,
                    "settings": vars(args) | {"out": str(args.out)},
                },
                indent=2,
            )
        )
    if conc["errors"] or seq["errors"] or hostile.get("errors"):
        sys.exit(1)


def _empty() -> dict:
    return {"requests": 0, "errors": 0, "req_per_s": 0.0, "tokens_per_s": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}


def _phase(base: str, args: argparse.Namespace, clients: int, hostile: tuple | None = None) -> dict:
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
    stop = threading.Event()
    sent = {"n": 0, "bytes": 0}
    if hostile:
        port, kind, body = hostile
        threads.append(
            threading.Thread(target=_hostile_client, args=(port, body, kind, args.hostile_every, stop, sent))
        )
    for t in threads:
        t.start()
    for t in threads[:clients]:
        t.join()
    stop.set()
    for t in threads[clients:]:
        t.join()
    wall = time.monotonic() - start
    lat = sorted(latencies)
    return {
        "hostile_sent": sent["n"],
        "hostile_bytes": sent["bytes"],
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


def _hostile_body(model: str, kind: str) -> bytes:
    """1 MB of prompt ("word " x 200,000), or a prompt just inside the model's context (``fits``)."""
    if kind == "1mb":
        text = "word " * 200_000
    else:
        from tunesmith.data.tokenize import prompt_ids
        from tunesmith.models.load import load_tokenizer, resolve_model_dir

        window = json.loads((resolve_model_dir(model) / "config.json").read_text())["max_position_embeddings"]
        tok = load_tokenizer(model)
        per = len(prompt_ids(tok, [{"role": "user", "content": "word " * 1000}])) / 1000
        text = "word " * int((window - 64) / per * 0.97)
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    ).encode()


def _hostile_client(
    port: int, body: bytes, kind: str, every: float, stop: threading.Event, sent: dict
) -> None:
    """Send ``body`` over a raw socket, then hang up (at once for 1mb, after 1 s for fits), every ``every`` s."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(head + body)
                sent["n"] += 1
                sent["bytes"] = len(body)
                if kind == "fits":
                    stop.wait(1.0)
        except OSError as exc:
            print(f"hostile client: {exc}", file=sys.stderr)
        stop.wait(every)


_CLIENTS: dict[str, object] = {}
AUTH = {"Authorization": "Bearer bench"}


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

    return httpx2.get(base + "/tunesmith/engine", headers=AUTH, timeout=10).json()["batches"]


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
            if httpx2.get(f"{base}/models", headers=AUTH, timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {base} did not come up in {timeout:.0f} s")


if __name__ == "__main__":
    main()
