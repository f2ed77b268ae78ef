"""Helpers for the server's HTTP-layer tests: toy data and a scripted engine (the tests using it are about
the HTTP layer; the real generation path is covered by the integration tests)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

from tunesmith.models.generate import Generation


def chat_lines(n: int = 12) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"add {i} {i + 1}"},
                {"role": "assistant", "content": str(2 * i + 1)},
            ]
        }
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def dpo_lines(n: int = 12) -> bytes:
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"say {i}"}]},
            "preferred_output": [{"role": "assistant", "content": str(i)}],
            "non_preferred_output": [{"role": "assistant", "content": "no"}],
        }
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


class ScriptedEngine:
    """Answers every request with a fixed text (or a queue of texts) at once; records what it was asked."""

    def __init__(self, texts: list[str] | None = None) -> None:
        self.texts = list(texts or ["scripted answer"])
        self.calls: list[tuple] = []

    def submit(self, ref, messages, settings, on_text=None, **kw) -> Future:  # noqa: ANN001
        self.calls.append((ref, messages, settings))
        self.extras = getattr(self, "extras", []) + [kw]  # prompt ids, cancel event, budget
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        if on_text is not None:  # streamed: the text arrives in pieces before the result
            for i in range(0, len(text), 4):
                on_text(text[i : i + 4])
        fut: Future = Future()
        fut.set_result(Generation(text, 7, 3, 0.01, "stop"))
        return fut

    batches: list[int] = []
    loads = 0

    def loaded(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def make_app(tmp: Path, **kw):
    from tunesmith.serve.app import ServeSettings, create_app

    return create_app(ServeSettings(data_dir=tmp / "data", start_workers=False, **kw))
