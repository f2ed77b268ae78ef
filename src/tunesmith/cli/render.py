"""Shared terminal rendering (rich)."""

from __future__ import annotations

import sys

from rich.console import Console

from tunesmith.errors import TunesmithError

console = Console()
err_console = Console(stderr=True)


def print_error(exc: TunesmithError) -> None:
    err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False, markup=True, soft_wrap=True)
    if exc.hint:
        err_console.print(f"[yellow]Hint:[/] {exc.hint}", highlight=False, soft_wrap=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> None:
    """Raise a user-facing error from a command."""
    raise TunesmithError(message, hint, exit_code=code)


def is_tty() -> bool:
    return sys.stdout.isatty()
