"""`tunesmith serve` (the OpenAI-compatible server) and `tunesmith logs` (monitoring: export, stats, correct)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tunesmith.cli.render import console, fail

logs_app = typer.Typer(
    help="Logged requests (enable with `tunesmith serve --log-requests`): export, stats, correct.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `serve` and the `logs` group to the root app."""
    app.command("serve")(serve)
    app.command("remote-train")(remote_train)
    app.add_typer(logs_app, name="logs")


def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 127.0.0.1 keeps the server local (default)."
    ),
    port: int = typer.Option(8000, help="TCP port."),
    data_dir: Path = typer.Option(
        Path("tunesmith-data"), help="Folder for the database, uploaded files and runs."
    ),
    api_key: list[str] = typer.Option(
        [],
        "--api-key",
        help="Accepted bearer key (repeatable; visible in the process list, prefer the file or "
        "TUNESMITH_API_KEY). No key from any source = no auth. An empty key is refused.",
    ),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", help="File with accepted bearer keys, one per line (# comments allowed)."
    ),
    max_context: int | None = typer.Option(
        None, min=16, help="Cap on prompt + answer tokens per chat request (default: the model's context)."
    ),
    concurrency: int = typer.Option(1, min=0, help="Fine-tuning jobs that run at once (worker processes)."),
    log_requests: bool = typer.Option(
        False, help="Store chat requests and answers in the database (opt-in)."
    ),
    max_upload_mb: int = typer.Option(512, min=1, help="Largest accepted upload."),
    cors_origin: list[str] = typer.Option(
        [], help="Allowed browser origin (repeatable). CORS is off without one."
    ),
    max_batch: int = typer.Option(8, min=1, help="Most chat requests generated together."),
    model_budget_mb: int = typer.Option(
        8192, min=1, help="Memory for loaded models and adapters (LRU beyond it)."
    ),
    base_model: list[str] = typer.Option(
        [], help="Extra base model (alias or local folder) to serve and train."
    ),
    train_override: list[str] = typer.Option(
        [], help="Config override applied to every job, e.g. train.save_every=50."
    ),
) -> None:
    """Serve the OpenAI-compatible API (files, fine-tuning jobs, models, chat, embeddings) and the dashboard."""
    import os

    import uvicorn

    from tunesmith.serve.app import ServeSettings, create_app
    from tunesmith.serve.guard import gather_keys

    keys = gather_keys(api_key, api_key_file, dict(os.environ))
    if host not in ("127.0.0.1", "localhost", "::1") and not keys:
        console.print(
            "[yellow]Warning:[/] binding to a non-local address without an API key: anyone who can reach "
            f"{host}:{port} can train and query models."
        )
    for b in base_model:
        if not Path(b).is_dir() and b not in ("smollm2-135m-instruct", "tiny"):
            fail(
                f"--base-model {b}: not an alias or an existing model folder.",
                "Pass a local folder saved with save_pretrained.",
            )
    # the id a folder is served under is its path as typed, tidied: `merged/` and `./merged` are `merged`
    base_model = [str(Path(b)) if Path(b).is_dir() else b for b in base_model]
    _check_port(host, port)
    settings = ServeSettings(
        data_dir=data_dir,
        api_keys=keys,
        max_context_tokens=max_context,
        concurrency=concurrency,
        log_requests=log_requests,
        max_upload_bytes=max_upload_mb << 20,
        cors_origins=list(cors_origin),
        max_batch=max_batch,
        model_budget_bytes=model_budget_mb << 20,
        extra_base_models=list(base_model),
        train_overrides=list(train_override),
        start_workers=concurrency > 0,
    )
    app = create_app(settings)
    console.print(
        f"tunesmith serving on http://{host}:{port}  (dashboard at /, API at /v1, data in {settings.data_dir})"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def remote_train(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. train.epochs=2."),
    base_url: str = typer.Option(
        ..., "--base-url", help="OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="OPENAI_API_KEY", help="Bearer key for that API."
    ),
    out: Path | None = typer.Option(None, "--out", help="Folder for the hold-out evaluation report."),
) -> None:
    """Fine-tune on a remote OpenAI-compatible API: validate locally, upload, start, follow, evaluate."""
    from tunesmith.config import load_config
    from tunesmith.train.remote import remote_client
    from tunesmith.workflows import remote

    cfg = load_config(config, overrides or [])
    result = remote.run(
        cfg,
        remote_client(base_url, api_key),
        on_event=lambda m: console.print(f"  {m}", highlight=False),
        out=out,
    )
    console.print(f"[bold]{result.status}[/] job {result.job_id}: model [cyan]{result.fine_tuned_model}[/]")
    if result.report is not None:
        numbers = result.report.candidates["finetuned"].numbers()
        console.print("hold-out: " + ", ".join(f"{k}={v:.3f}" for k, v in numbers.items()), highlight=False)


@logs_app.command("export")
def logs_export(
    out: Path = typer.Argument(..., help="Training JSONL to write."),
    data_dir: Path = typer.Option(Path("tunesmith-data"), help="The server's data folder."),
    model: str | None = typer.Option(None, help="Only requests to this model."),
    corrected_only: bool = typer.Option(False, help="Only conversations a reviewer corrected."),
) -> None:
    """Write logged conversations as chat training lines (the corrected answer replaces the model's)."""
    from tunesmith.serve.monitor import export_logs

    n = export_logs(_store(data_dir), out, model=model, corrected_only=corrected_only)
    console.print(f"wrote {n} conversation(s) to {out}")


@logs_app.command("stats")
def logs_stats(
    data_dir: Path = typer.Option(Path("tunesmith-data"), help="The server's data folder."),
) -> None:
    """Per-model request volume and latency from the logged requests."""
    from rich.markup import escape
    from rich.table import Column, Table

    from tunesmith.serve.monitor import log_stats

    stats = log_stats(_store(data_dir))
    # the model id is never cut (it is what a client sends); the number columns wrap
    width = max((len(s["model"]) for s in stats), default=5)
    if width + 56 > console.width:  # too narrow for a table: one block per model
        for s in stats:
            console.print(f"[bold]{escape(s['model'])}[/]", highlight=False, soft_wrap=True)
            console.print(
                f"  {s['requests']:,} requests, {s['completion_tokens']:,} completion tokens, "
                f"latency p50 {s['p50_ms']:,.0f} ms, p95 {s['p95_ms']:,.0f} ms",
                highlight=False,
            )
        return
    num = {"justify": "right", "overflow": "fold"}
    table = Table(
        Column("model", no_wrap=True, min_width=width),
        Column("requests", **num),
        Column("completion tokens", **num),
        Column("latency p50", **num),
        Column("latency p95", **num),
    )
    for s in stats:
        table.add_row(
            s["model"],
            f"{s['requests']:,}",
            f"{s['completion_tokens']:,}",
            f"{s['p50_ms']:,.0f} ms",
            f"{s['p95_ms']:,.0f} ms",
        )
    console.print(table)


@logs_app.command("correct")
def logs_correct(
    log_id: int = typer.Argument(..., help="Request log id (see the export or the database)."),
    answer: str = typer.Argument(..., help="The answer the model should have given."),
    data_dir: Path = typer.Option(Path("tunesmith-data"), help="The server's data folder."),
) -> None:
    """Store a reviewer's corrected answer for a logged request (used by `logs export`)."""
    if not _store(data_dir).correct_log(log_id, answer):
        fail(
            f"No logged request with id {log_id}.",
            "List them with `tunesmith logs export OUT` and look at the ids.",
        )
    console.print(json.dumps({"id": log_id, "corrected": True}))


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        fail(
            f"Cannot listen on {host}:{port}: {exc.strerror}.",
            "Pick another --port, or stop the program using it.",
        )


def _store(data_dir: Path):
    from tunesmith.serve.store import Store

    db = data_dir / "tunesmith.db"
    if not db.exists():
        fail(f"{db} does not exist.", "Pass the --data-dir the server was started with.")
    return Store(db)
