"""Helpers for the server's integration tests: toy data, an app with real worker processes, waiting."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def add_lines(n: int = 16) -> bytes:
    """A learnable toy chat task (short, so tiny-model steps are fast)."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"add {i % 7} {i % 5}"},
                {"role": "assistant", "content": f"The sum is {i % 7 + i % 5}."},
            ]
        }
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def start_app(data_dir: Path, overrides: list[str], concurrency: int = 1, **kw: Any) -> Any:
    """The app plus its supervisor (the in-process transport does not run the ASGI lifespan)."""
    from tunesmith.serve.app import ServeSettings, create_app
    from tunesmith.serve.jobs import Supervisor

    settings = ServeSettings(
        data_dir=data_dir, start_workers=False, train_overrides=overrides, concurrency=concurrency, **kw
    )
    app = create_app(settings)
    app.state.supervisor = Supervisor(
        settings.data_dir, concurrency, overrides, stop_grace_s=settings.stop_grace_s, tick_s=0.2
    )
    app.state.supervisor.start()
    return app


HANG_GUARD_S = 600.0  # turns a hang into a failure; never a speed limit (benchmarks own timing)


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    """Wait until ``predicate()`` (a state of the server, the store or the page) is true and return it,
    re-reading that state every ``every`` s. ``timeout`` is a hang guard only: it never drops below
    ``HANG_GUARD_S``, so a slow or busy machine makes a test slower, never failed."""
    guard = max(timeout, HANG_GUARD_S)
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)  # the poll interval while the state is not there yet, not a wait for time to pass
    raise AssertionError(f"hang guard: still waiting for {what} after {guard:.0f} s")


def final_train_loss(store: Any, job_id: str) -> tuple[int, float]:
    series = [m for m in store.metrics_series(job_id) if "train_loss" in m]
    return series[-1]["step"], series[-1]["train_loss"]
