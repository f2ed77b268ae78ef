"""The server's front door: API keys and request-body limits, as one pure ASGI middleware.

Design choices:
- **Every route needs a key when keys are set**, except ``GET /`` (the dashboard's static HTML shell,
  which holds no data: it asks for the key and sends it on each of its ``/v1`` calls). That includes
  ``/openapi.json``, unknown URLs (401, not 404: no probing for routes) and the dashboard's data calls.
  ``tests/unit/serve/test_serve_guard.py`` enumerates ``app.routes`` so a new route cannot be forgotten.
- **Keys are checked once, at start-up** (``check_keys``): an empty or whitespace-only key is refused,
  because ``--api-key "$UNSET_VAR"`` would otherwise configure the key ``""``, which every request
  without an ``Authorization`` header matched. Keys come from ``--api-key``, the ``TUNESMITH_API_KEY``
  environment variable or ``--api-key-file`` (argv is visible to other local users in ``ps``).
- **Constant-time comparison**: both sides are hashed to SHA-256 first (so the comparison does not
  depend on the key's length either) and compared with ``hmac.compare_digest`` against every key, with
  no early exit.
- **Body limits while receiving**: a declared ``Content-Length`` over the limit is refused before the
  body is read; otherwise the bytes are counted as they arrive and the request fails with 413 at the
  first chunk past the limit (a chunked upload cannot stream gigabytes into a temporary file first).
  ``/v1/files`` gets ``max_upload_bytes`` plus room for the multipart framing; every other route
  ``max_body_bytes`` (JSON bodies).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from tunesmith.errors import UsageError
from tunesmith.serve.errors import APIError, error_response

# the dashboard and workbench shells only (static, no data); their data calls go through /v1 with the key
OPEN_PATHS = frozenset({"/", "/workbench", "/workbench/app.js"})
MULTIPART_SLACK = 64 * 1024  # multipart framing around the uploaded file's bytes


class BodyTooLarge(APIError):
    """Raised from ``receive`` when a request body passes its limit (a 413 in OpenAI's shape)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(
            413,
            f"The {what} is larger than the limit of {limit:,} bytes.",
            param="file" if what == "upload" else None,
            code="file_too_large" if what == "upload" else "request_too_large",
        )


def check_keys(keys: Iterable[str]) -> list[str]:
    """The configured keys, stripped of surrounding whitespace.

    Raises:
        UsageError: when a key is empty or only whitespace (it would match requests without a key).
    """
    out = []
    for i, key in enumerate(keys, start=1):
        if not isinstance(key, str) or not key.strip():
            raise UsageError(
                f"API key #{i} is empty: an API key must not be empty.",
                'Pass a non-empty key (check that the variable in `--api-key "$VAR"` is set), '
                "or drop --api-key to serve without authentication on a local address.",
            )
        out.append(key.strip())
    return out


def load_key_file(path: Any) -> list[str]:
    """Keys from a file, one per line; blank lines and ``#`` comments are skipped.

    Raises:
        UsageError: when the file cannot be read or holds no key.
    """
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--api-key-file {path}: cannot read it ({exc}).", "Give a readable UTF-8 file."
        ) from None
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not keys:
        raise UsageError(
            f"--api-key-file {path} holds no key: an API key must not be empty.",
            "Write one key per line.",
        )
    return keys


def key_digests(keys: Iterable[str]) -> list[bytes]:
    return [hashlib.sha256(k.encode()).digest() for k in keys]


def authorized(header: str | None, digests: list[bytes]) -> bool:
    """True when the ``Authorization: Bearer <key>`` header carries one of the keys (constant time)."""
    auth = header or ""
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not given:
        return False  # checked apart from the comparison: an empty key never matches
    want = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    ok = False
    for d in digests:  # every key compared, no early exit
        ok |= hmac.compare_digest(want, d)
    return ok


class Guard:
    """Pure ASGI middleware: 401 without a valid key (when keys are set), 413 past the body limits."""

    def __init__(self, app: Any, *, keys: list[str], max_upload_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.digests = key_digests(keys)
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, method = scope.get("path", ""), scope.get("method", "GET")
        open_path = path in OPEN_PATHS and method in ("GET", "HEAD")
        if self.digests and not open_path and not authorized(headers.get("authorization"), self.digests):
            err = APIError(401, "Incorrect API key provided.", code="invalid_api_key")
            await error_response(err)(scope, receive, send)
            return
        upload = path.rstrip("/") == "/v1/files" and method == "POST"
        limit = self.max_upload_bytes + MULTIPART_SLACK if upload else self.max_body_bytes
        what = "upload" if upload else "request body"
        declared = headers.get("content-length", "")
        shown = self.max_upload_bytes if upload else limit
        if declared.isdigit() and len(declared) < 20 and int(declared) > limit:
            await error_response(BodyTooLarge(shown, what))(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(shown, what)
            return message

        await self.app(scope, counted, send)


KEY_ENV = "TUNESMITH_API_KEY"


def gather_keys(flags: Iterable[str], key_file: Any, environ: dict[str, str]) -> list[str]:
    """Every configured key: ``--api-key`` values, the ``TUNESMITH_API_KEY`` variable when it is set
    (set but empty is an error, not "no auth"), and ``--api-key-file`` lines.

    Raises:
        UsageError: when any of them is empty or the file holds no key.
    """
    keys = list(flags)
    if KEY_ENV in environ:
        value = environ[KEY_ENV]
        if not value.strip():
            raise UsageError(
                f"{KEY_ENV} is set but empty: an API key must not be empty.",
                f"Set {KEY_ENV} to the key, or unset it to serve without authentication.",
            )
        keys.append(value)
    if key_file is not None:
        keys += load_key_file(key_file)
    return check_keys(keys)
