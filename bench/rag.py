"""RAG benchmark: indexing throughput and peak memory for ~10,000 chunks, incremental re-index, query latency
p50/p95 and recall@5 / MRR on a generated question set, dense vs BM25 vs hybrid side by side, with
reference runs in the same process:

- embedding reference: plain ``SentenceTransformer.encode`` (fp32, CPU) on a sample of the same chunk
  texts; our indexing throughput is reported as a ratio of it (what chunking + storage + BM25 cost on top);
- dense reference: ``sentence_transformers.util.semantic_search`` over the same vectors (same recall
  expected; latency compared);
- BM25 reference: bm25s with its own English tokenizer (``bm25s.tokenize(stopwords="en")``).

The corpus is generated (seeded): fictional products, one document each, with sections whose facts are
asked back as questions; a third of the questions paraphrase (dense should win), a third quote a part
number (BM25 should win), a third are plain. Every product name also appears in two other documents
(a compatibility section), so the name alone does not identify the document.

    flock /tmp/tunesmith-heavy.lock python bench/rag.py            # ~10,000 chunks
    python bench/rag.py --products 100 --questions 60              # smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

SYLLABLES = [
    "ka",
    "lo",
    "ve",
    "ran",
    "tor",
    "mi",
    "zu",
    "pel",
    "dra",
    "xin",
    "qua",
    "bel",
    "sor",
    "fen",
    "gal",
    "tis",
]
MATERIALS = ["walnut", "titanium", "recycled aluminium", "ceramic", "carbon fibre", "oak", "brass", "bamboo"]
COLOURS = ["teal", "crimson", "ivory", "graphite", "amber", "olive", "cobalt", "sand"]
CITIES = ["Lisbon", "Tampere", "Graz", "Osaka", "Valparaiso", "Quebec", "Dundee", "Bergen"]


def make_corpus(n_products: int, seed: int) -> tuple[dict[str, str], list[dict[str, str]]]:
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n_products:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize())
    docs, questions = {}, []
    ordered = sorted(names)
    for i, name in enumerate(ordered):
        # cross-references: a product's name also appears in other documents, as in real catalogues
        others = rng.sample(ordered, 2)
        part = f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}-{rng.randint(1000, 9999)}"
        weight, material, colour = rng.randint(2, 90), rng.choice(MATERIALS), rng.choice(COLOURS)
        city, years, hours = rng.choice(CITIES), rng.randint(1, 9), rng.randint(2, 40)
        src = f"products/{name.lower()}.md"
        docs[src] = (
            f"# {name}\n\n"
            f"## Overview\n\nThe {name} is a {colour} desk appliance designed in {city}. It is sold under part "
            f"number {part} and ships in a padded box with a quick-start card and a power cable.\n\n"
            f"## Specifications\n\nThe {name} weighs {weight} kilograms. Its housing is made of {material}, and "
            f"the front panel is finished in {colour}. It draws little power when idle.\n\n"
            f"## Battery\n\nOn a full charge the {name} runs for {hours} hours. Charging from empty takes about "
            f"two hours with the supplied cable.\n\n"
            f"## Warranty\n\nThe {name} is covered by a {years}-year warranty that includes parts and labour. "
            f"Claims are handled by the service centre in {city}.\n\n"
            f"## Care\n\nWipe the {name} with a dry cloth. Do not use solvents on the {material} housing.\n\n"
            f"## Compatibility\n\nThe {name} docks with the {others[0]} and shares chargers with the {others[1]}.\n"
        )
        kind = i % 3
        if kind == 0:  # paraphrase: few shared words
            q = rng.choice([(f"How heavy is the {name}?", f"{weight} kilograms"),
                            (f"For how long is the {name} guaranteed?", f"{years}-year"),
                            (f"How many hours can the {name} go between charges?", f"{hours} hours")])  # fmt: skip
        elif kind == 1:  # exact identifier
            q = (f"Which appliance has part number {part}?", name)
        else:
            q = rng.choice([(f"What material is the {name} housing made of?", material),
                            (f"Where was the {name} designed?", city)])  # fmt: skip
        questions.append(
            {
                "question": q[0],
                "answer": q[1],
                "source": src,
                "kind": ["paraphrase", "identifier", "plain"][kind],
            }
        )
    return docs, questions


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--products", type=int, default=2000, help="documents (~5 chunks each at --chunk-tokens 64)"
    )
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--chunk-tokens", type=int, default=64)
    ap.add_argument(
        "--ref-sample", type=int, default=2000, help="chunks embedded by the reference encode run"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()

    import torch

    from tunesmith.rag import open_index, retrieve
    from tunesmith.rag.embed import get_embedder
    from tunesmith.rag.evaluate import QAItem, first_relevant_rank, retrieval_metrics
    from tunesmith.rag.index import index_documents

    torch.set_default_dtype(torch.float32)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32 everywhere (ours and references)"
    )
    docs, qa = make_corpus(args.products, args.seed)
    qa = qa[: args.questions] if args.questions < len(qa) else qa
    rng = random.Random(args.seed)
    rng.shuffle(qa)
    emb = get_embedder("minilm")
    _ = emb.model  # load before measuring, so memory and time are the indexing's own
    base_rss = rss_mb()
    out: dict = {"products": len(docs), "questions": len(qa)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "docs"
        for rel, text in docs.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        idx = Path(tmp) / "idx"

        # ---------------------------------------------------------------- indexing
        t0 = time.perf_counter()
        rep = index_documents([root], idx, chunk_tokens=args.chunk_tokens, chunk_overlap=8)
        t_index = time.perf_counter() - t0
        peak = rss_mb()
        t0 = time.perf_counter()
        again = index_documents([root], idx, chunk_tokens=args.chunk_tokens, chunk_overlap=8)
        t_again = time.perf_counter() - t0
        assert again.chunks_embedded == 0 and again.files_read == 0
        # edit 1% of the documents: only their changed chunks are embedded
        edited = sorted(docs)[::100]
        for rel in edited:
            p = root / rel
            p.write_text(p.read_text().replace("Wipe", "Gently wipe"))
        t0 = time.perf_counter()
        upd = index_documents([root], idx, chunk_tokens=args.chunk_tokens, chunk_overlap=8)
        t_upd = time.perf_counter() - t0
        out["index"] = {
            "chunks": rep.n_chunks, "seconds": round(t_index, 2), "chunks_per_s": round(rep.n_chunks / t_index, 1),
            "peak_rss_mb": round(peak, 1), "rss_growth_mb": round(peak - base_rss, 1),
            "index_size_mb": round(sum(f.stat().st_size for f in idx.rglob("*") if f.is_file()) / 2**20, 1),
            "reindex_unchanged_s": round(t_again, 3), "update_1pct_s": round(t_upd, 2),
            "update_1pct_embedded": upd.chunks_embedded, "update_1pct_reused": upd.chunks_reused,
        }  # fmt: skip

        print("index:", json.dumps(out["index"]), flush=True)  # partial figures survive a timeout

        # ---------------------------------------------------------------- reference embedding throughput
        index = open_index(idx)
        ids, texts = index.store.all_texts()
        sample = texts[: args.ref_sample]
        t0 = time.perf_counter()
        emb.model.encode(
            sample, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        t_ref = time.perf_counter() - t0
        out["reference_encode"] = {"chunks": len(sample), "chunks_per_s": round(len(sample) / t_ref, 1)}
        out["index"]["throughput_vs_plain_encode"] = round(
            out["index"]["chunks_per_s"] / out["reference_encode"]["chunks_per_s"], 3
        )

        # ---------------------------------------------------------------- retrieval quality + latency
        items = [QAItem(i, q["question"], q["answer"], q["source"]) for i, q in enumerate(qa)]
        retrieve(index, "warm up", k=5, mode="hybrid")
        results = {}
        for mode in ("dense", "bm25", "hybrid"):
            lat, ranks, by_kind = [], [], {}
            for q, item in zip(qa, items, strict=True):
                t0 = time.perf_counter()
                got = retrieve(index, item.question, k=10, mode=mode)
                lat.append((time.perf_counter() - t0) * 1000)
                r = first_relevant_rank(got, item)
                ranks.append(r)
                by_kind.setdefault(q["kind"], []).append(r)
            m = retrieval_metrics(ranks, [1, 5, 10])
            results[mode] = {**{k: round(v, 3) for k, v in m.items()},
                             "p50_ms": round(statistics.median(lat), 2), "p95_ms": round(pct(lat, 95), 2),
                             **{f"recall@5_{k}": round(retrieval_metrics(v, [5])["recall@5"], 3) for k, v in sorted(by_kind.items())}}  # fmt: skip
        out["retrieval"] = results
        print("retrieval:", json.dumps(results), flush=True)

        # ---------------------------------------------------------------- references: ST semantic_search, bm25s default
        import bm25s
        from sentence_transformers import util

        _, matrix = index.dense
        corpus_t = torch.from_numpy(matrix.copy())
        rows = index.store.chunks([int(i) for i in ids])
        lat, ranks = [], []
        for item in items:
            t0 = time.perf_counter()
            qv = emb.model.encode([item.question], normalize_embeddings=True, convert_to_tensor=True)
            hits = util.semantic_search(qv, corpus_t, top_k=10)[0]
            lat.append((time.perf_counter() - t0) * 1000)
            srcs = [rows[int(ids[h["corpus_id"]])].source for h in hits]
            ranks.append(next((i + 1 for i, s in enumerate(srcs) if s == item.source), None))
        ref_dense = {**{k: round(v, 3) for k, v in retrieval_metrics(ranks, [1, 5, 10]).items()},
                     "p50_ms": round(statistics.median(lat), 2), "p95_ms": round(pct(lat, 95), 2)}  # fmt: skip
        retr = bm25s.BM25()
        retr.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        lat, ranks = [], []
        for item in items:
            t0 = time.perf_counter()
            docs_idx, _ = retr.retrieve(
                bm25s.tokenize([item.question], stopwords="en", show_progress=False),
                k=10,
                show_progress=False,
            )
            lat.append((time.perf_counter() - t0) * 1000)
            srcs = [rows[int(ids[j])].source for j in docs_idx[0]]
            ranks.append(next((i + 1 for i, s in enumerate(srcs) if s == item.source), None))
        ref_bm25 = {**{k: round(v, 3) for k, v in retrieval_metrics(ranks, [1, 5, 10]).items()},
                    "p50_ms": round(statistics.median(lat), 2), "p95_ms": round(pct(lat, 95), 2)}  # fmt: skip
        out["reference"] = {"st_semantic_search": ref_dense, "bm25s_default_tokenizer": ref_bm25}
        index.close()

    _print(out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


def _print(out: dict) -> None:
    ix = out["index"]
    print(
        f"\ncorpus: {out['products']} documents, {ix['chunks']} chunks; {out['questions']} generated questions"
    )
    print(f"indexing: {ix['seconds']} s = {ix['chunks_per_s']} chunks/s "
          f"(plain SentenceTransformer.encode: {out['reference_encode']['chunks_per_s']} chunks/s; "
          f"ratio ours/plain {ix['throughput_vs_plain_encode']})")  # fmt: skip
    print(
        f"peak RSS {ix['peak_rss_mb']} MB (+{ix['rss_growth_mb']} MB during indexing); index on disk {ix['index_size_mb']} MB"
    )
    print(f"re-index unchanged: {ix['reindex_unchanged_s']} s ({ix['seconds'] / max(ix['reindex_unchanged_s'], 1e-6):.0f}x faster than the build); "
          f"edit 1% of files: {ix['update_1pct_s']} s, {ix['update_1pct_embedded']} chunks embedded, {ix['update_1pct_reused']} reused")  # fmt: skip
    cols = ["recall@1", "recall@5", "recall@10", "mrr", "p50_ms", "p95_ms"]
    print("\n" + f"{'mode':<28}" + "".join(f"{c:>11}" for c in cols))
    rows = {**out["retrieval"], **{f"ref: {k}": v for k, v in out["reference"].items()}}
    for mode, vals in rows.items():
        print(f"{mode:<28}" + "".join(f"{vals[c]:>11}" for c in cols))
    kinds = [k for k in out["retrieval"]["hybrid"] if k.startswith("recall@5_")]
    print("\nrecall@5 by question kind: " + "; ".join(
        f"{k.removeprefix('recall@5_')}: " + ", ".join(f"{m} {out['retrieval'][m][k]}" for m in ("dense", "bm25", "hybrid"))
        for k in kinds))  # fmt: skip
    h, d, b = (out["retrieval"][m]["recall@5"] for m in ("hybrid", "dense", "bm25"))
    print(f"hybrid/dense recall@5 = {h / d:.3f}, hybrid/bm25 = {h / b:.3f}" if d and b else "")


if __name__ == "__main__":
    main()
