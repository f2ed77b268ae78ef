"""The real ``openai`` SDK talking to the app in process (no port, no sleep): for tests and notebooks.

``httpx2.ASGITransport`` is async-only; ``SyncASGITransport`` runs it on a private event loop thread so the
synchronous ``openai.OpenAI`` client can use it too. Responses are read whole before they are returned
(a stream still arrives as SSE chunks and is parsed by the SDK's own stream decoder).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx2


class SyncASGITransport(httpx2.BaseTransport):
    def __init__(self, app: Any) -> None:
        self._inner = httpx2.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asgi-loop", daemon=True)
        self._thread.start()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()

        async def go() -> tuple[int, Any, bytes]:
            areq = httpx2.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self._inner.handle_async_request(areq)
            return resp.status_code, resp.headers, await resp.aread()

        status, headers, content = asyncio.run_coroutine_threadsafe(go(), self._loop).result()
        headers = [(k, v) for k, v in headers.multi_items() if k.lower() != "content-length"]
        return httpx2.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def in_process_client(app: Any, api_key: str = "test", strict: bool = True, max_retries: int = 0) -> Any:
    """An ``openai.OpenAI`` client whose requests go straight into ``app`` (strict response validation on)."""
    import openai

    http = httpx2.Client(transport=SyncASGITransport(app), base_url="http://tunesmith.local/v1")
    return openai.OpenAI(
        base_url="http://tunesmith.local/v1",
        api_key=api_key,
        max_retries=max_retries,
        _strict_response_validation=strict,
        http_client=http,
    )


# --------------------------------------------------------------------------- scripted generation


def scripted(model: Any, tok: Any, script: Any) -> Any:
    """``model`` whose ``generate`` answers each prompt with ``script(prompt_ids)`` (a string) instead of
    decoding: the text is tokenized, closed with the end-of-turn token and returned the way
    ``model.generate`` returns (prompt + new tokens, padded), with every new token handed to a streamer.
    The engine uses it when ``Engine.script`` is set, so a test gets a fixed answer through the real
    engine, prompt rendering, streaming and decoding (``tests/*/serve/test_serve_tools*.py``)."""
    return _Scripted(model, tok, script)


class _Scripted:
    def __init__(self, model: Any, tok: Any, script: Any) -> None:
        self._model, self._tok, self._script = model, tok, script

    def generate(self, input_ids: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        import torch

        eos = kwargs.get("eos_token_id")
        eos_id = eos[0] if isinstance(eos, list) else eos
        pad = kwargs.get("pad_token_id", eos_id)
        limit = int(kwargs.get("max_new_tokens") or 1)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        rows = []
        for ids, m in zip(input_ids.tolist(), mask.tolist(), strict=True):
            prompt = [t for t, keep in zip(ids, m, strict=True) if keep]
            answer = self._tok(self._script(prompt), add_special_tokens=False)["input_ids"] + [eos_id]
            rows.append(answer[:limit])
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        streamer = kwargs.get("streamer")
        if streamer is not None:
            streamer.put(input_ids.cpu())
            for j in range(width):
                streamer.put(new[:, j])
            streamer.end()
        return torch.cat([input_ids.cpu(), new], dim=1).to(input_ids.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
