"""Chat prompts checked before any generation starts: template, context length, ``max_tokens``; and the
watch that cancels a request whose client has gone.

Design choices:
- **The route tokenizes** (in a thread) with the same tokenizer the engine will use for that model, and
  hands the ids to the engine, so every problem with the conversation (a role the chat template refuses,
  a prompt too long) is an HTTP 400 in OpenAI's shape before a stream starts.
- **Context** is the model's ``max_position_embeddings`` (config.json), optionally capped by the server's
  ``max_context_tokens``. ``prompt + max_tokens`` over it is 400 ``context_length_exceeded`` with
  OpenAI's message. Without ``max_tokens`` the answer gets ``min(default, what fits)``.
- **No tokenizing of a megabyte to refuse it**: every token covers at most ``L`` characters (``L`` = the
  longest vocabulary entry), so content longer than ``context * L`` characters cannot fit and is refused
  from its length alone.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from pathlib import Path
from typing import Any

from tunesmith.serve.errors import APIError, bad_request

FALLBACK_CONTEXT = 2048


def fit_prompt(
    ref: Any,
    messages: list[dict[str, Any]],
    requested: int | None,
    cap: int | None,
    default: int,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[int], int]:
    """The prompt's token ids and the ``max_tokens`` to decode. ``tools``: the request's tool definitions,
    rendered by the chat template (``data.render.render_chat``, as training renders a row's ``tools``).

    Raises:
        APIError: 400 ``context_length_exceeded`` when the prompt (plus ``requested``) does not fit the
            context; 400 ``invalid_prompt`` when the chat template refuses the conversation.
    """
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.errors import TunesmithError

    tok = prompt_tokenizer(ref)
    window = context_window(ref, cap)
    chars = sum(len(m.get("content") or "") for m in messages) + (len(json.dumps(tools)) if tools else 0)
    floor = -(-chars // _longest_token(tok))  # at least this many tokens, whatever the tokenizer does
    if floor + (requested or 1) > window:
        raise _too_long(window, floor, requested, at_least=True)
    try:
        prompt = prompt_ids(tok, messages, tools=tools)
    except TunesmithError as exc:
        raise bad_request(
            f"{exc.message}" + (f" {exc.hint}" if exc.hint else ""), param="messages", code="invalid_prompt"
        ) from None
    except (ValueError, TypeError) as exc:  # e.g. text the tokenizer cannot encode
        raise bad_request(
            f"The messages cannot be tokenized: {type(exc).__name__}: {exc}",
            param="messages",
            code="invalid_prompt",
        ) from None
    n = len(prompt)
    if n + (requested or 1) > window:
        raise _too_long(window, n, requested)
    return prompt, requested or min(default, window - n)


def _too_long(window: int, n: int, requested: int | None, at_least: bool = False) -> APIError:
    some = "at least " if at_least else ""
    if requested:
        detail = f"you requested {some}{n + requested} tokens ({some}{n} in the messages, {requested} in the completion)"
    else:
        detail = f"your messages resulted in {some}{n} tokens, leaving no room for an answer"
    return APIError(
        400,
        f"This model's maximum context length is {window} tokens. However, {detail}. "
        "Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )


def prompt_tokenizer(ref: Any) -> Any:
    """The tokenizer the engine uses for ``ref``: a full model's own, an adapter's when it saved one,
    else the base model's."""
    if ref.kind == "model" or (
        ref.kind == "adapter" and ref.weights and (Path(ref.weights) / "tokenizer_config.json").exists()
    ):
        return _tokenizer(str(ref.weights))
    return _tokenizer(ref.base)


def context_window(ref: Any, cap: int | None = None) -> int:
    """Prompt + answer tokens the model takes (``max_position_embeddings``), at most ``cap``."""
    folder = str(ref.weights) if ref.kind == "model" else ref.base
    window = _model_context(folder)
    return min(window, cap) if cap else window


@functools.lru_cache(maxsize=32)
def _tokenizer(name: str) -> Any:
    from tunesmith.models.load import load_tokenizer

    return load_tokenizer(name)


@functools.lru_cache(maxsize=32)
def _longest_token(tok: Any) -> int:
    return max((len(t) for t in tok.get_vocab()), default=1) or 1


@functools.lru_cache(maxsize=32)
def _model_context(name: str) -> int:
    from tunesmith.models.load import resolve_model_dir

    try:
        cfg = json.loads((resolve_model_dir(name) / "config.json").read_text())
    except (OSError, ValueError, Exception):  # noqa: BLE001 - an unreadable config keeps the safe default
        return FALLBACK_CONTEXT
    value = cfg.get("max_position_embeddings") or cfg.get("n_positions") or FALLBACK_CONTEXT
    return int(value)


# --------------------------------------------------------------------------- client disconnects


async def until_disconnect(request: Any, work: Any, cancel: threading.Event) -> Any:
    """Await ``work``; if the client disconnects first, set ``cancel`` (the engine drops the request)
    and raise (nobody is left to read the answer).

    Raises:
        APIError: 499 when the client went away.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        cancel.set()
        raise APIError(499, "The client closed the request; its generation was cancelled.", code="cancelled")
    finally:
        watch.cancel()
        if not task.done():
            cancel.set()
            task.cancel()


async def _disconnected(request: Any) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return
