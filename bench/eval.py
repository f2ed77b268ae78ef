"""Evaluation benchmark: batched evaluation vs one-example-at-a-time ``generate``, and label scoring vs
generation for classification, on the same hold-out, in one run.

Model: SmolLM2-135M-Instruct, fp32 on CPU for every path. Data: the demo's support-ticket hold-out
(``examples/support_tickets/generate.py``, seed 11), zero-shot prompts with the model's chat template.

- ``reference (one at a time)``: plain transformers ``model.generate`` on each prompt alone (batch 1,
  KV cache on, greedy), the loop most evaluation scripts write.
- ``tunesmith batched``: ``tunesmith.models.generate.generate`` (length-sorted batches, left padding, KV
  cache, greedy) with ``--batch-size`` prompts per batch.
- ``label scoring``: ``tunesmith.models.generate.score_labels``: the log-likelihood of each of the four labels
  as the whole answer, batched forward passes, no decoding.

Both generation paths use the same prompts, the same ``max_new_tokens`` and the same stop tokens; the
benchmark also reports how many answers are identical between them (greedy decoding; fp32 batched vs
unbatched numerics can flip a near-tie). Timings are medians over ``--repeats`` runs.

    flock /tmp/tunesmith-heavy.lock python bench/eval.py [--n 32] [--repeats 3] [--batch-size 16] [--adapter RUN]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="hold-out examples")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--model", default=MODEL, help="base model (the tiny one for a smoke run)")
    ap.add_argument(
        "--adapter", type=Path, default=None, help="also score a fine-tuned run (e.g. a demo's runs/ folder)"
    )
    a = ap.parse_args()

    import torch

    from tunesmith.eval.prompts import query_messages
    from tunesmith.models.inference import load_for_inference

    torch.manual_seed(0)
    rows = _tickets(a.n)
    labels = sorted({r["label"] for r in rows})
    system = "Route the Northwind Cloud support ticket. Answer with one queue: account, billing, priority, technical."
    convs = [query_messages(r, "classification", system) for r in rows]
    golds = [r["label"] for r in rows]
    print(f"# bench/eval.py: {a.model}, fp32 on CPU (every path), torch threads {torch.get_num_threads()}, "
          f"n={a.n}, max_new_tokens={a.max_new_tokens}, batch size {a.batch_size}, medians of {a.repeats}")  # fmt: skip
    cands = [("base", None)] + ([("finetuned", a.adapter)] if a.adapter else [])
    for cand, adapter in cands:
        model, tok = load_for_inference(
            a.model if adapter is None else None, adapter, dtype="float32", device="cpu"
        )
        print(f"\n## {cand}" + (f" ({adapter})" if adapter else ""))
        bench_candidate(model, tok, convs, golds, labels, a)


def bench_candidate(
    model, tok, convs: list, golds: list[str], labels: list[str], a: argparse.Namespace
) -> None:
    """Time the three paths for one model and print medians, ratios and accuracies."""
    import torch

    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.eval.metrics import match_label
    from tunesmith.models.generate import GenerationSettings, generate, score_labels, stop_token_ids

    settings = GenerationSettings(max_tokens=a.max_new_tokens)
    stops = stop_token_ids(model, tok)

    def one_at_a_time() -> list[str]:
        out = []
        for c in convs:
            ids = torch.tensor([prompt_ids(tok, c)])
            with torch.inference_mode():
                seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.max_new_tokens,
                                     do_sample=False, eos_token_id=stops, pad_token_id=tok.pad_token_id)  # fmt: skip
            out.append(tok.decode(seq[0, ids.shape[1] :], skip_special_tokens=True).strip())
        return out

    def batched() -> list[str]:
        return [g.text for g in generate(model, tok, convs, settings, batch_size=a.batch_size)]

    def scoring() -> list[str]:
        return score_labels(model, tok, convs, labels, batch_size=a.batch_size).predictions

    ref_t, ref_out = _timed(one_at_a_time, a.repeats)
    bat_t, bat_out = _timed(batched, a.repeats)
    ls_t, ls_out = _timed(scoring, a.repeats)
    same = sum(x == y for x, y in zip(ref_out, bat_out, strict=True))
    acc_gen = sum(match_label(x, labels) == g for x, g in zip(bat_out, golds, strict=True)) / len(golds)
    acc_ref = sum(match_label(x, labels) == g for x, g in zip(ref_out, golds, strict=True)) / len(golds)
    acc_ls = sum(p == g for p, g in zip(ls_out, golds, strict=True)) / len(golds)
    print(f"{'path':38} {'median s':>9} {'ms/example':>11} {'accuracy':>9} {'speed vs reference':>19}")
    paths = [
        ("reference: one-at-a-time generate", ref_t, acc_ref),
        (f"tunesmith batched generate (bs {a.batch_size})", bat_t, acc_gen),
        ("tunesmith label scoring", ls_t, acc_ls),
    ]
    for name, t, acc in paths:
        print(f"{name:38} {t:9.2f} {1000 * t / len(convs):11.1f} {acc:9.3f} {ref_t / t:18.1f}x")
    print(f"batched vs one-at-a-time: {ref_t / bat_t:.1f}x faster; identical answers {same}/{len(convs)}")
    print(f"label scoring vs batched generation: {bat_t / ls_t:.1f}x faster; accuracy {acc_ls:.3f} vs {acc_gen:.3f} "
          f"(generated answers naming no label: {sum(match_label(x, labels) is None for x in bat_out)}/{len(convs)})")  # fmt: skip


def _timed(fn, repeats: int) -> tuple[float, list[str]]:
    times, out = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _tickets(n: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location(
        "gen", ROOT / "examples" / "support_tickets" / "generate.py"
    )
    gen = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    return gen.generate(n, seed=11)


if __name__ == "__main__":
    sys.exit(main())
