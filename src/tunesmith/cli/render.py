"""Shared terminal rendering (rich)."""

from __future__ import annotations

import sys

from rich.console import Console

from tunesmith.errors import TunesmithError

console = Console()
err_console = Console(stderr=True)


def print_error(exc: TunesmithError) -> None:
    """Message and hint as plain text: user data in a message (``[brackets]`` in a line) is never markup."""
    from rich.text import Text

    err_console.print(Text.assemble(("Error: ", "bold red"), exc.message), soft_wrap=True)
    if exc.hint:
        err_console.print(Text.assemble(("Hint: ", "yellow"), exc.hint), soft_wrap=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> None:
    """Raise a user-facing error from a command."""
    raise TunesmithError(message, hint, exit_code=code)


def is_tty() -> bool:
    return sys.stdout.isatty()
