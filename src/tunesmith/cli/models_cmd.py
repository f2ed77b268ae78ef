"""`tunesmith models list|info|pull`."""

from __future__ import annotations

import json

import typer

from tunesmith.cli.render import console

models_app = typer.Typer(help="Embedded and local models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models() -> None:
    """List the built-in model aliases and whether they are ready to load."""
    from rich.table import Table

    from tunesmith.models.load import ALIASES, model_status

    table = Table("alias", "kind", "status", "description")
    for alias, info in ALIASES.items():
        table.add_row(alias, info.kind, model_status(alias), info.description)
    console.print(table)


@models_app.command("info")
def info(name: str = typer.Argument(..., help="Alias, local folder or hub id.")) -> None:
    """Show a model's architecture, size, context length and chat template."""
    from tunesmith.models.load import describe_model

    typer.echo(json.dumps(describe_model(name), indent=2))


@models_app.command("pull")
def pull(name: str = typer.Argument(..., help="Alias or hub id to make ready (convert/download).")) -> None:
    """Prepare a model for offline use: convert the embedded GGUF once, or download a hub id (online only)."""
    from tunesmith.models.load import resolve_model_dir

    path = resolve_model_dir(name)
    console.print(f"[green]Ready[/] {name} -> {path}")
