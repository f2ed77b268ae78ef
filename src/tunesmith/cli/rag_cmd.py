"""`tunesmith rag index|query|ask|eval`: document index, retrieval, grounded answers, evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tunesmith.cli.render import console, err_console
from tunesmith.errors import TunesmithError, UsageError

if TYPE_CHECKING:
    from tunesmith.config import RagConfig

rag_app = typer.Typer(
    help="Retrieval-augmented generation: index documents, query, ask with citations, evaluate.",
    no_args_is_help=True,
)

MODE_HELP = "Retrieval mode: hybrid (BM25 + dense, reciprocal-rank fusion), dense or bm25."
MODE_DEFAULT = " Default: rag.mode (hybrid)."
# str, not Path: a postgresql:// URL would lose a slash as a Path
INDEX_HELP = "Index folder, or the postgresql:// URL it was built into."
INDEX_DEFAULT = " Default: rag.index (then give only the question)."
PROJECT_CONFIG = "tunesmith.yaml"
CONFIG_HELP = (
    "Project config whose rag: section sets the defaults (flags win). "
    f"Default: ./{PROJECT_CONFIG} if it exists."
)
OVERRIDE_HELP = "Config override KEY=VALUE, e.g. --override rag.k=8 (repeatable)."


def register(app: typer.Typer) -> None:
    app.add_typer(rag_app, name="rag")


def _check_mode(mode: str) -> str:
    if mode not in ("hybrid", "dense", "bm25"):
        raise UsageError(f"--mode {mode!r} is not one of hybrid, dense, bm25.", "Example: --mode hybrid")
    return mode


def _rag_settings(config: Path | None, overrides: list[str]) -> RagConfig:
    """The rag section of --config (else ./tunesmith.yaml, else the defaults) with the overrides applied."""
    from tunesmith.config import load_config

    if config is None and Path(PROJECT_CONFIG).is_file():
        config = Path(PROJECT_CONFIG)
    return load_config(config, overrides).rag


def _index_from(index: str | None, rag: RagConfig, what: str) -> str:
    if index:
        return index
    if rag.index is None:
        raise UsageError(
            f"No index given: pass {what} or set rag.index in the project config ({PROJECT_CONFIG} or --config).",
            'Example: tunesmith rag query kb.index "How do I reset the widget?"',
        )
    return str(rag.index)


def _index_and_question(index: str | None, question: str | None, rag: RagConfig) -> tuple[str, str]:
    """`INDEX QUESTION`, or just `QUESTION` when the config sets rag.index."""
    if question is None:
        if index is None:
            raise UsageError(
                "Missing QUESTION.", 'Example: tunesmith rag query kb.index "How do I reset the widget?"'
            )
        index, question = None, index
    return _index_from(index, rag, "INDEX before the question"), question


@rag_app.command("index")
def index_cmd(
    docs: list[Path] | None = typer.Argument(
        None,
        metavar="DOCS",
        help="Document files or folders (.txt .md .html .pdf .jsonl .csv). Default: rag.docs.",
    ),
    index: str | None = typer.Option(
        None,
        "--index",
        help="Index folder (created if missing, updated if present), or a postgresql:// URL (pgvector). "
        "Default: rag.index.",
    ),
    chunk_tokens: int | None = typer.Option(
        None,
        "--chunk-tokens",
        help="Chunk size in embedder tokens (capped at the embedder's limit). Default: rag.chunk_tokens (256).",
    ),
    chunk_overlap: int | None = typer.Option(
        None,
        "--chunk-overlap",
        help="Tokens shared by consecutive chunks of a long section. Default: rag.chunk_overlap (32).",
    ),
    embedder: str = typer.Option(
        "minilm", "--embedder", help="Embedder: 'minilm' (embedded) or a sentence-transformers folder."
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Drop everything in the index and rebuild it (e.g. for a new embedder)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    override: list[str] = typer.Option([], "--override", help=OVERRIDE_HELP),
) -> None:
    """Index documents; re-running updates only what changed (unchanged files are not even read)."""
    from tunesmith.rag.index import index_documents
    from tunesmith.rag.pgstore import redact

    rag = _rag_settings(config, override)
    docs = list(docs or rag.docs)
    if not docs:
        raise UsageError(
            f"No documents to index: pass DOCS or set rag.docs in the project config ({PROJECT_CONFIG} or --config).",
            "Example: tunesmith rag index docs/ --index kb.index",
        )
    index = _index_from(index, rag, "--index")
    chunk_tokens = rag.chunk_tokens if chunk_tokens is None else chunk_tokens
    chunk_overlap = rag.chunk_overlap if chunk_overlap is None else chunk_overlap
    if chunk_tokens < 16 or chunk_overlap < 0 or chunk_overlap >= chunk_tokens:
        raise UsageError(
            f"--chunk-tokens {chunk_tokens} / --chunk-overlap {chunk_overlap}: need chunk_tokens >= 16 and 0 <= overlap < chunk_tokens.",
            "Example: --chunk-tokens 256 --chunk-overlap 32",
        )
    # progress (files done, ETA) comes from the library's step through the one progress helper, on stderr
    report = index_documents(docs, index, embedder=embedder, chunk_tokens=chunk_tokens,
                             chunk_overlap=chunk_overlap, rebuild=rebuild)  # fmt: skip
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        console.print(
            f"[bold]{redact(str(index))}[/]: {report.n_docs} documents, {report.n_chunks} chunks. This run: "
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
    index: str | None = typer.Argument(None, metavar="INDEX", help=INDEX_HELP + INDEX_DEFAULT),
    question: str | None = typer.Argument(
        None, metavar="QUESTION", help="The question or search text (required)."
    ),
    k: int | None = typer.Option(None, "-k", "--k", help="Passages to return. Default: rag.k (5)."),
    mode: str | None = typer.Option(None, "--mode", help=MODE_HELP + MODE_DEFAULT),
    rerank: Path | None = typer.Option(
        None,
        "--rerank",
        help="A local cross-encoder folder (CrossEncoder.save(); never downloaded) that re-scores the candidates.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print passages as JSON."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    override: list[str] = typer.Option([], "--override", help=OVERRIDE_HELP),
) -> None:
    """Show the top passages with scores and sources."""
    from rich.table import Table

    from tunesmith.rag.retrieve import open_index, retrieve

    rag = _rag_settings(config, override)
    index, question = _index_and_question(index, question, rag)
    mode = _check_mode(mode) if mode is not None else rag.mode
    idx = open_index(index)
    passages = retrieve(idx, question, k=rag.k if k is None else k, mode=mode, rerank=rerank)  # type: ignore[arg-type]
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
    index: str | None = typer.Argument(None, metavar="INDEX", help=INDEX_HELP + INDEX_DEFAULT),
    question: str | None = typer.Argument(None, metavar="QUESTION", help="The question (required)."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Base model (alias or folder). Default: the run's base, else smollm2-135m-instruct.",
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="A fine-tuned run (runs/<id>) to answer with."
    ),
    k: int | None = typer.Option(None, "-k", "--k", help="Passages given to the model. Default: rag.k (5)."),
    mode: str | None = typer.Option(None, "--mode", help=MODE_HELP + MODE_DEFAULT),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Answer length budget."),
    min_relevance: float = typer.Option(
        0.25,
        "--min-relevance",
        help="Below this cosine for the best passage the answer is 'not in the documents' without asking the model.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print answer, citations and passages as JSON."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    override: list[str] = typer.Option([], "--override", help=OVERRIDE_HELP),
) -> None:
    """Answer from the documents with numbered citations, or say it is not in the documents."""
    from tunesmith.models.inference import load_for_inference
    from tunesmith.rag.answer import ask, make_generator
    from tunesmith.rag.retrieve import open_index

    rag = _rag_settings(config, override)
    index, question = _index_and_question(index, question, rag)
    mode = _check_mode(mode) if mode is not None else rag.mode
    idx = open_index(index)
    if model is None and adapter is None:
        model = "smollm2-135m-instruct"
    lm, tok = load_for_inference(model, adapter, dtype="float32")
    answer = ask(
        idx,
        question,
        make_generator(lm, tok, max_tokens),
        k=rag.k if k is None else k,
        mode=mode,  # type: ignore[arg-type]
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
    index: str | None = typer.Argument(None, metavar="INDEX", help=INDEX_HELP + " Default: rag.index."),
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
    answer_k: int | None = typer.Option(
        None, "--answer-k", help="Passages given to the model for answers. Default: rag.k (5)."
    ),
    answer_mode: str | None = typer.Option(
        None, "--answer-mode", help="Retrieval mode for answers. Default: rag.mode (hybrid)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder for rag_eval.json and rag_eval_details.jsonl."
    ),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    override: list[str] = typer.Option([], "--override", help=OVERRIDE_HELP),
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
    rag = _rag_settings(config, override)
    index = _index_from(index, rag, "INDEX")
    answer_mode = _check_mode(answer_mode) if answer_mode is not None else rag.mode
    items = load_qa(qa)
    idx = open_index(index)
    gen = None
    if model is not None or adapter is not None:
        from tunesmith.models.inference import load_for_inference

        lm, tok = load_for_inference(model, adapter, dtype="float32")
        gen = make_batch_generator(lm, tok)
    try:
        result = run_rag_eval(
            idx,
            items,
            ks,
            out,
            generate_many=gen,
            answer_k=rag.k if answer_k is None else answer_k,
            answer_mode=answer_mode,
        )
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
