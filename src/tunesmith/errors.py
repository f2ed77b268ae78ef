"""The one error type users see. The CLI renders it as a message plus a hint, never a traceback."""

from __future__ import annotations


class TunesmithError(Exception):
    """A problem the user can fix: ``message`` says what and where, ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class UsageError(TunesmithError):
    """Wrong arguments or options (exit code 2)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint, exit_code=2)
