"""One progress helper for the steps that can take more than a few seconds (issue 17): the one-time model
conversion, answer generation and label scoring (prompted baselines, evaluation, the demo), document
indexing (``rag/index.py``), merging and saving an export (``train/export.py``). Library code marks a step
with :func:`step` and advances it; whoever runs the work (the CLI: on the terminal, or on stderr when
stdout is redirected) installs a sink with
:func:`use_sink` and decides how to show it. With no sink installed a step costs a clock read per advance
and prints nothing.

The ETA is the linear estimate elapsed / done x (total - done): adequate for steps made of equal-sized
units (batches of answers), shown only once a unit is done."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One report about a step: ``state`` is ``start``, ``advance`` or ``done``; ``total`` may be None
    (a step of unknown length); times in seconds."""

    name: str
    state: str
    done: int
    total: int | None
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first unit or without a total."""
        if not self.total or self.done <= 0 or self.state == "start":
            return None
        return max(self.elapsed_s / self.done * (self.total - self.done), 0.0)


Sink = Callable[[ProgressEvent], None]
_sinks: list[Sink] = []


@contextlib.contextmanager
def use_sink(sink: Sink) -> Iterator[None]:
    """Send the events of every step run inside this block to ``sink`` (nested blocks: the innermost)."""
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


class Step:
    """A running step; :meth:`advance` after each unit of work."""

    def __init__(self, name: str, total: int | None, clock: Callable[[], float]) -> None:
        self.name, self.total, self.done, self._clock = name, total, 0, clock
        self._t0 = clock()

    def _emit(self, state: str) -> None:
        if _sinks:
            _sinks[-1](ProgressEvent(self.name, state, self.done, self.total, self._clock() - self._t0))

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._emit("advance")


@contextlib.contextmanager
def step(
    name: str, total: int | None = None, *, clock: Callable[[], float] = time.monotonic
) -> Iterator[Step]:
    """Mark a long step (``total`` units, or None when unknown); ``done`` is reported when it ends."""
    s = Step(name, total, clock)
    s._emit("start")
    yield s
    s._emit("done")
