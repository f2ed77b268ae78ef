"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` for every non-2xx answer.

FastAPI's own ``{"detail": ...}`` bodies and its 422 are replaced: the openai SDK maps 422 to an exception
without ``code``, and OpenAI answers bad input with 400 ``invalid_request_error``. Deterministic state
conflicts are 400 too, never 409 (the SDK retries 409). Unexpected exceptions become a 500 whose body
names the exception type only (no traceback leaves the process) and carries ``x-should-retry: false``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tunesmith.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """An error answer: HTTP status plus the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or _TYPES.get(status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(404, message, param=param, code=code)


def error_response(err: APIError) -> JSONResponse:
    headers = {"x-should-retry": "false"} if err.status >= 500 or err.status == 409 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def from_validation_error(exc: ValidationError | RequestValidationError, prefix: str = "") -> APIError:
    """The first pydantic problem as a 400 whose ``param`` is the dotted field path."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = _field_path(first.get("loc", ()))
    # A union (e.g. "auto" | int) reports one error per branch at the same field: say them together.
    msgs = [_message(e) for e in errors if _field_path(e.get("loc", ())) == loc]
    param = ".".join(loc) or None
    if prefix and param:
        param = f"{prefix}.{param}"
    msg = " or ".join(dict.fromkeys(msgs)) or "invalid value"
    what = f"'{param}': " if param else ""
    others = len({tuple(_field_path(e.get("loc", ()))) for e in errors}) - 1
    more = f" (and {others} more field(s) with problems)" if others > 0 else ""
    return bad_request(f"Invalid request: {what}{msg}{more}.", param=param, code="invalid_value")


_BRANCH_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "is-instance", "json-or-python"}


def _field_path(loc: Any) -> list[str]:
    """The field names and list indexes of a pydantic error location, without the union-branch tags
    pydantic inserts (``literal['auto']``, ``int``, ``function-after[...]``, model class names)."""
    out = []
    for p in loc:
        if p == "body":
            continue
        if isinstance(p, int):
            out.append(str(p))
        elif "[" in p or "(" in p or p in _BRANCH_TAGS or p[:1].isupper():
            continue
        else:
            out.append(p)
    return out


def _message(err: Any) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown field; remove it"
    msg = str(err.get("msg", "invalid value"))
    if err.get("type") in ("int_type", "float_type", "bool_type", "string_type"):
        msg += f" (got {type(err.get('input')).__name__}: values are not converted)"
    return msg


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation_error(exc))

    @app.exception_handler(ValidationError)
    async def _pyd_validation(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(from_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(
                not_found(f"Unknown URL {request.method} {request.url.path}.", code="unknown_url")
            )
        if exc.status_code == 405:
            return error_response(
                APIError(405, f"Method {request.method} is not allowed on {request.url.path}.")
            )
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            APIError(
                500, f"Internal error ({type(exc).__name__}); see the server log.", code="internal_error"
            )
        )
