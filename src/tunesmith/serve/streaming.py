"""Token-by-token streaming on top of the shared ``generate`` path, without forking it.

``observed(model, tok, batch)`` returns a thin proxy of the model whose ``generate`` adds a transformers
streamer and otherwise forwards every argument unchanged, so streamed answers are decoded by exactly the
same call as non-streamed ones (same prompts, settings, stop tokens). The streamer maps each batch row
to its request by the row's prompt ids (the shared path may reorder prompts by length), decodes each row's
new tokens and hands out only text that can no longer change: nothing past an end-of-turn token, nothing
that could still turn out to be the start of a stop string, no half-decoded UTF-8 character, no trailing
whitespace (the final answer is stripped). The final ``Generation.text`` stays the authority: the chat route
sends whatever remains of it after the streamed prefix.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.tokenize import prompt_ids


class _Row:
    def __init__(self, request: Any, prompt: list[int]) -> None:
        self.request, self.prompt = request, prompt
        self.tokens: list[int] = []
        self.sent = ""
        self.done = False


class _Streamer:
    def __init__(self, tok: Any, rows: list[_Row], stop_ids: set[int]) -> None:
        self.tok, self.rows, self.stop_ids = tok, rows, stop_ids
        self.order: list[_Row | None] | None = None

    def put(self, value: Any) -> None:
        if self.order is None:  # the prompt batch: match rows to requests by their (unpadded) prompt ids
            pending = list(self.rows)
            self.order = []
            for row_ids in value.tolist():
                match = next(
                    (r for r in pending if row_ids[len(row_ids) - len(r.prompt) :] == r.prompt), None
                )
                if match is not None:
                    pending.remove(match)
                self.order.append(match)
            return
        flat = value.reshape(len(self.order), -1).tolist()
        for row, new in zip(self.order, flat, strict=False):
            if row is None or row.done:
                continue
            for t in new:
                if t in self.stop_ids:
                    row.done = True
                    break
                row.tokens.append(t)
            self._emit(row)

    def end(self) -> None:
        pass

    def _emit(self, row: _Row) -> None:
        stops = tuple(row.request.settings.stop or ())
        text = self.tok.decode(row.tokens, skip_special_tokens=True).lstrip()
        cut = [text.find(s) for s in stops if s and s in text]
        if cut:
            text, row.done = text[: min(cut)], True
        safe = text.rstrip()
        if not row.done:
            hold = max((len(s) - 1 for s in stops), default=0)
            safe = safe[: max(0, len(safe) - hold)] if hold else safe
            while safe.endswith("\ufffd"):
                safe = safe[:-1]
        if safe.startswith(row.sent) and len(safe) > len(row.sent):
            delta, row.sent = safe[len(row.sent) :], safe
            try:
                row.request.on_text(delta)
            except Exception:  # noqa: BLE001 - a gone listener must not break the batch it shares
                row.done = True


class _Observed:
    """The model, with a streamer added to ``generate``; everything else is the model itself."""

    def __init__(self, model: Any, streamer: _Streamer) -> None:
        self._model, self._streamer = model, streamer

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.generate(*args, streamer=self._streamer, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def observed(model: Any, tok: Any, batch: list[Any]) -> Any:
    from tunesmith.models.generate import stop_token_ids

    rows = [_Row(r, r.prompt if r.prompt is not None else prompt_ids(tok, r.messages)) for r in batch]
    silent = [row for row in rows if row.request.on_text is None]
    for row in silent:
        row.done = True  # not streamed: ignore its tokens
    return _Observed(model, _Streamer(tok, rows, set(stop_token_ids(model, tok))))
