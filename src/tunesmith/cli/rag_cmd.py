"""`tunesmith rag index|query|ask|eval`: document index, retrieval, grounded answers, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tunesmith.cli.render import console, err_console
from tunesmith.errors import TunesmithError, UsageError

rag_app = typer.Typer(
    help="Retrieval-augmented generation: index documents, query, ask with citations, evaluate.",
    no_args_is_help=True,
)

MODE_HELP = "Retrieval mode: hybrid (BM25 + dense, reciprocal-rank fusion), dense or bm25."
# str, not Path: a postgresql:// URL would lose a slash as a Path
INDEX_HELP = "Index folder, or the postgresql:// URL it was built into."


def register(app: typer.Typer) -> None:
    app.add_typer(rag_app, name="rag")


def _check_mode(mode: str) -> str:
    if mode not in ("hybrid", "dense", "bm25"):
        raise UsageError(f"--mode {mode!r} is not one of hybrid, dense, bm25.", "Example: --mode hybrid")
    return mode


@rag_app.command("index")
def index_cmd(
    docs: list[Path] = typer.Argument(
        ..., help="Document files or folders (.txt .md .html .pdf .jsonl .csv)."
    ),
    index: str = typer.Option(
        ...,
        "--index",
        help="Index folder (created if missing, updated if present), or a postgresql:// URL (pgvector).",
    ),
    chunk_tokens: int = typer.Option(
        256, "--chunk-tokens", help="Chunk size in embedder tokens (capped at the embedder's limit)."
    ),
    chunk_overlap: int = typer.Option(
        32, "--chunk-overlap", help="Tokens shared by consecutive chunks of a long section."
    ),
    embedder: str = typer.Option(
        "minilm", "--embedder", help="Embedder: 'minilm' (embedded) or a sentence-transformers folder."
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Drop everything in the index and rebuild it (e.g. for a new embedder)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Index documents; re-running updates only what changed (unchanged files are not even read)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tunesmith.rag.index import index_documents

    if chunk_tokens < 16 or chunk_overlap < 0 or chunk_overlap >= chunk_tokens:
        raise UsageError(
            f"--chunk-tokens {chunk_tokens} / --chunk-overlap {chunk_overlap}: need chunk_tokens >= 16 and 0 <= overlap < chunk_tokens.",
            "Example: --chunk-tokens 256 --chunk-overlap 32",
        )
    with Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=err_console, transient=True,
                  disable=as_json or not err_console.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, source: str) -> None:
            bar.update(task, completed=done, total=total, description=source[-40:])

        report = index_documents(docs, index, embedder=embedder, chunk_tokens=chunk_tokens,
                                 chunk_overlap=chunk_overlap, rebuild=rebuild, progress=progress)  # fmt: skip
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        console.print(
            f"[bold]{index}[/]: {report.n_docs} documents, {report.n_chunks} chunks. This run: "
            f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.deleted} deleted; "
            f"{report.chunks_embedded} chunks embedded, {report.chunks_reused} reused ({report.seconds:.1f} s).",
            highlight=False,
        )
        for issue in report.failed:
            err_console.print(
                f"[yellow]skipped[/] {issue.message} {issue.hint}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
        for issue in report.warnings[:20]:
            err_console.print(
                f"[dim]warning[/] {issue.message} {issue.hint}", highlight=False, soft_wrap=True
            )
        if len(report.warnings) > 20:
            err_console.print(f"[dim]... and {len(report.warnings) - 20} more line warnings (see --json)[/]")
    if report.n_docs == 0 and report.failed:
        raise typer.Exit(1)


@rag_app.command("query")
def query_cmd(
    index: str = typer.Argument(..., help=INDEX_HELP),
    question: str = typer.Argument(..., help="The question or search text."),
    k: int = typer.Option(5, "-k", "--k", help="Passages to return."),
    mode: str = typer.Option("hybrid", "--mode", help=MODE_HELP),
    rerank: Path | None = typer.Option(
        None, "--rerank", help="A local cross-encoder folder that re-scores the candidates."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print passages as JSON."),
) -> None:
    """Show the top passages with scores and sources."""
    from rich.table import Table

    from tunesmith.rag.retrieve import open_index, retrieve

    idx = open_index(index)
    passages = retrieve(idx, question, k=k, mode=_check_mode(mode), rerank=rerank)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in passages], indent=2))
        return
    if not passages:
        console.print("No passage matched.")
        return
    table = Table("#", "score", "source", "passage", show_lines=True)
    for i, p in enumerate(passages, start=1):
        where = p.source + (f" ({p.location})" if p.location else "")
        text = p.text if len(p.text) <= 400 else p.text[:400] + " ..."
        table.add_row(str(i), f"{p.score:.4f}", where, text)
    console.print(table)


@rag_app.command("ask")
def ask_cmd(
    index: str = typer.Argument(..., help=INDEX_HELP),
    question: str = typer.Argument(..., help="The question."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Base model (alias or folder). Default: the run's base, else smollm2-135m-instruct.",
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="A fine-tuned run (runs/<id>) to answer with."
    ),
    k: int = typer.Option(5, "-k", "--k", help="Passages given to the model."),
    mode: str = typer.Option("hybrid", "--mode", help=MODE_HELP),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Answer length budget."),
    min_relevance: float = typer.Option(
        0.25,
        "--min-relevance",
        help="Below this cosine for the best passage the answer is 'not in the documents' without asking the model.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print answer, citations and passages as JSON."),
) -> None:
    """Answer from the documents with numbered citations, or say it is not in the documents."""
    from tunesmith.models.inference import load_for_inference
    from tunesmith.rag.answer import ask, make_generator
    from tunesmith.rag.retrieve import open_index

    idx = open_index(index)
    if model is None and adapter is None:
        model = "smollm2-135m-instruct"
    lm, tok = load_for_inference(model, adapter, dtype="float32")
    answer = ask(
        idx,
        question,
        make_generator(lm, tok, max_tokens),
        k=k,
        mode=_check_mode(mode),
        min_relevance=min_relevance,
    )  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps({"answer": answer.text, "grounded": answer.grounded, "reason": answer.reason,
                               "citations": answer.citations, "raw": answer.raw,
                               "passages": [p.__dict__ for p in answer.passages]}, indent=2))  # fmt: skip
        return
    console.print(answer.text, highlight=False, markup=False)
    if answer.grounded:
        for n in answer.citations:
            p = answer.passages[n - 1]
            console.print(
                f"  [{n}] {p.source}" + (f" ({p.location})" if p.location else ""),
                highlight=False,
                markup=False,
            )
    else:
        err_console.print(f"[dim]({answer.reason})[/]", highlight=False)


@rag_app.command("eval")
def eval_cmd(
    index: str = typer.Argument(..., help=INDEX_HELP),
    qa: Path = typer.Option(
        ...,
        "--qa",
        help="JSONL: question, answer, optional source (file name or path relative to the indexed folder).",
    ),
    k: str = typer.Option("1,5,10", "--k", help="Comma-separated k values for recall@k."),
    model: str | None = typer.Option(
        None, "--model", help="Also generate answers with this model (EM, token F1, faithfulness)."
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="Answer with this fine-tuned run (implies answers)."
    ),
    answer_k: int = typer.Option(5, "--answer-k", help="Passages given to the model for answers."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder for rag_eval.json and rag_eval_details.jsonl."
    ),
) -> None:
    """Retrieval recall@k and MRR for dense, BM25 and hybrid; with --model, answer quality too."""
    from tunesmith.rag.evaluate import load_qa, make_batch_generator, run_rag_eval
    from tunesmith.rag.retrieve import open_index

    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"--k {k!r} is not a comma-separated list of integers.", "Example: --k 1,5,10"
        ) from None
    items = load_qa(qa)
    idx = open_index(index)
    gen = None
    if model is not None or adapter is not None:
        from tunesmith.models.inference import load_for_inference

        lm, tok = load_for_inference(model, adapter, dtype="float32")
        gen = make_batch_generator(lm, tok)
    try:
        result = run_rag_eval(idx, items, ks, out, generate_many=gen, answer_k=answer_k)
    except TunesmithError:
        raise
    from rich.table import Table

    metrics = list(result["retrieval"]["hybrid"])
    table = Table("mode", *metrics, title=f"retrieval, {result['n']} questions")
    for mode, vals in result["retrieval"].items():
        table.add_row(mode, *(f"{vals[m]:.3f}" for m in metrics))
    console.print(table)
    if result["answers"]:
        a = result["answers"]
        console.print(
            f"answers ({a['mode']}, k={a['k']}): exact match {a['exact_match']:.3f}, token F1 {a['token_f1']:.3f}, "
            f"faithfulness {a['faithfulness']:.3f}, not in the documents {a['not_in_documents']}/{a['n']}",
            highlight=False,
        )
    console.print(f"wrote {Path(out) / 'rag_eval.json'}", highlight=False)
