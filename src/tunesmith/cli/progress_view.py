"""How the CLI shows :mod:`tunesmith.progress` steps: plain lines (they coexist with rich status spinners
and training bars, and read well in logs). A counted step prints its count, elapsed time and ETA at most
every ``every_s`` seconds of the step, and when it completes if it took that long (a quick step prints nothing); a step of unknown length prints when it starts
and how long it took. Installed for every command by ``cli.main.main``."""

from __future__ import annotations

from typing import Any

from tunesmith.progress import ProgressEvent


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class ProgressLines:
    """A progress sink printing to a rich console (``print`` is all it uses)."""

    def __init__(self, console: Any, every_s: float = 5.0) -> None:
        self.console, self.every_s = console, every_s
        self._last: dict[str, float] = {}

    def __call__(self, e: ProgressEvent) -> None:
        if e.state == "start":
            self._last[e.name] = 0.0
            if e.total is None:
                self.console.print(f"{e.name} ...", highlight=False)
            return
        if e.state == "done":
            self._last.pop(e.name, None)
            if e.total is None:  # a counted step's last line is its full count
                self.console.print(f"{e.name}: done in {_dur(e.elapsed_s)}", highlight=False)
            return
        since = e.elapsed_s - self._last.get(e.name, 0.0)
        if e.total and (since >= self.every_s or (e.done >= e.total and e.elapsed_s >= self.every_s)):
            self._last[e.name] = e.elapsed_s
            eta = e.eta_s
            left = f", about {_dur(eta)} left" if eta is not None and e.done < e.total else ""
            self.console.print(
                f"{e.name}: {e.done:,}/{e.total:,} ({e.done / e.total:.0%}), {_dur(e.elapsed_s)} elapsed{left}",
                highlight=False,
            )
