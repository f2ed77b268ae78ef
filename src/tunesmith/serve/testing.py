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
