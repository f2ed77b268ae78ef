"""``/v1/chat/completions`` and ``/v1/embeddings``, plus per-model latency/volume stats.

Design choices:
- Generation goes through the engine (batched, adapters over one base) and the shared
  ``tunesmith.models.generate`` path: same chat template, same stop tokens as ``tunesmith eval``/``chat``.
- Defaults follow OpenAI: ``temperature`` 1, ``top_p`` 1; ``max_tokens`` defaults to 256 (a CPU server).
- **Streaming** is SSE in OpenAI's chunk format (role chunk, content chunks, finish chunk, optional usage
  chunk, ``[DONE]``). The text is produced by the batched generation call and then sent as per-token
  chunks, so time-to-first-token equals the batch's latency (the shared generate has no token callback).
- **response_format json_object / json_schema: validate-and-retry**, not constrained decoding. The
  schema (or "a JSON object") is stated in a system instruction, the answer is parsed (and validated with
  ``jsonschema``), and up to ``JSON_RETRIES`` seeded sampled retries follow a failure. If none is valid
  the answer is a 500 ``invalid_json_output`` (the model could not do it), never invalid JSON sent as if
  it were valid.
- Request/response logging to the database is opt-in (``--log-requests``); latency/volume counters are
  in memory and always on (no content).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.data.toolcalls import CallSplitter
from tunesmith.serve import tools as tools_mod
from tunesmith.serve import wire
from tunesmith.serve.errors import APIError, bad_request, not_found
from tunesmith.serve.prompts import fit_prompt, prompt_tokenizer, until_disconnect
from tunesmith.serve.store import Store, new_id

JSON_RETRIES = 2
DEFAULT_MAX_TOKENS = 256
EMBED_CHUNK = 32  # texts per embedding forward pass (and per hold of the model lock)
EMBED_MODELS = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def add_routes(app: FastAPI) -> None:
    from tunesmith.serve.app import json_body

    stats = Stats()
    app.state.stats = stats
    embedder = _Embedder()

    @app.post("/v1/chat/completions", openapi_extra=wire.openapi_body(wire.ChatRequest))
    async def chat_completions(request: Request) -> Any:
        body: wire.ChatRequest = await json_body(request, wire.ChatRequest)
        ref = await asyncio.to_thread(resolve_model, app, body.model)
        messages = [_message(m, i) for i, m in enumerate(body.messages)]
        schema = _response_schema(body)
        tool_req = tools_mod.tool_request(body)
        _settings(body, 1)  # the cheap checks (stop strings) before tokenizing
        # every check on the conversation happens here, before a stream starts (serve.prompts)
        msgs = _with_json_rule(messages, schema)
        tool_req = await asyncio.to_thread(
            lambda: tools_mod.check_template(prompt_tokenizer(ref), tool_req, messages)
        )
        prompt, max_tokens = await asyncio.to_thread(
            fit_prompt,
            ref,
            msgs,
            body.max_completion_tokens or body.max_tokens,
            app.state.settings.max_context_tokens,
            DEFAULT_MAX_TOKENS,
            tool_req.tools if tool_req else None,
        )
        settings = _settings(body, max_tokens)
        job = _Job(prompt, threading.Event(), app.state.settings.request_budget_s, tool_req)
        t0 = time.perf_counter()
        cid, created = new_id("chatcmpl-"), int(time.time())
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        if body.stream and schema is None and not (tool_req and tool_req.must_call):  # sent as decoded
            return StreamingResponse(
                _live_sse(app, body, ref, messages, settings, cid, created, include_usage, t0, job),
                media_type="text/event-stream",
            )
        gen = await until_disconnect(request, _generate(app, ref, msgs, settings, schema, job), job.cancel)
        _record(app, body, messages, gen, t0)
        usage = _usage(gen)
        if body.stream:  # json response_format, required tool calls: validated (maybe retried) before sending
            tok = prompt_tokenizer(ref)
            return StreamingResponse(
                _sse(cid, created, body.model, gen, usage, include_usage, tok, tool_req),
                media_type="text/event-stream",
            )
        message, finish_reason = _answer(gen, tool_req)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage,
                "system_fingerprint": "tunesmith",
            }
        )

    def _record(
        app: FastAPI, body: wire.ChatRequest, messages: list[dict[str, Any]], gen: Any, t0: float
    ) -> None:
        latency = (time.perf_counter() - t0) * 1000
        stats.add(body.model, latency, gen.completion_tokens)
        if app.state.settings.log_requests:
            app.state.store.log_request(
                {
                    "created_at": time.time(),
                    "model": body.model,
                    "messages": json.dumps(messages),
                    "response": gen.text,
                    "latency_ms": latency,
                    "prompt_tokens": gen.prompt_tokens,
                    "completion_tokens": gen.completion_tokens,
                    "status": 200,
                    "stream": int(bool(body.stream)),
                }
            )

    async def _live_sse(
        app: FastAPI,
        body: wire.ChatRequest,
        ref: Any,
        messages: list[dict[str, Any]],
        settings: Any,
        cid: str,
        created: int,
        include_usage: bool,
        t0: float,
        job: _Job,
    ) -> Any:
        try:
            async for piece in _live_events(
                app, body, ref, messages, settings, cid, created, include_usage, t0, job
            ):
                yield piece
        finally:  # the client went away (the server cancels this generator) or the answer is complete
            job.cancel.set()

    async def _live_events(
        app: FastAPI,
        body: wire.ChatRequest,
        ref: Any,
        messages: list[dict[str, Any]],
        settings: Any,
        cid: str,
        created: int,
        include_usage: bool,
        t0: float,
        job: _Job,
    ) -> Any:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()
        fut = app.state.engine.submit(
            ref,
            messages,
            settings,
            on_text=lambda d: loop.call_soon_threadsafe(pieces.put_nowait, d),
            prompt=job.prompt,
            cancel=job.cancel,
            budget_s=job.budget_s,
        )
        done_fut = asyncio.wrap_future(fut)
        done_fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even if nobody waits
        chunk = _chunker(cid, created, body.model, include_usage)
        yield chunk({"role": "assistant", "content": ""})
        # with tools, content is released only up to where a tool call may start (data.toolcalls)
        splitter = CallSplitter(job.tools.family) if job.tools and job.tools.parses else None
        sent = ""
        while not done_fut.done():
            getter = asyncio.ensure_future(pieces.get())
            finished, _ = await asyncio.wait({getter, done_fut}, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                piece = splitter.feed(getter.result()) if splitter else getter.result()
                if piece:
                    sent += piece
                    yield chunk({"content": piece})
            else:
                getter.cancel()
        while not pieces.empty():
            piece = splitter.feed(pieces.get_nowait()) if splitter else pieces.get_nowait()
            if piece:
                sent += piece
                yield chunk({"content": piece})
        try:
            gen = done_fut.result()
        except Exception as exc:  # noqa: BLE001 - after the stream started, errors travel as an SSE error event
            msg = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            yield f"data: {json.dumps({'error': {'message': msg, 'type': 'server_error', 'param': None, 'code': 'generation_failed'}})}\n\n"
            yield "data: [DONE]\n\n"
            return
        message, finish_reason = _answer(gen, job.tools)
        rest = message["content"] or ""
        if rest.startswith(sent) and len(rest) > len(sent):
            yield chunk({"content": rest[len(sent) :]})
        tok = prompt_tokenizer(ref)
        for delta in tools_mod.call_deltas(message.get("tool_calls") or [], lambda t: _pieces(t, tok)):
            yield chunk(delta)
        _record(app, body, messages, gen, t0)
        yield chunk({}, finish_reason)
        if include_usage:
            yield chunk({}, choices=False, use=_usage(gen))
        yield "data: [DONE]\n\n"

    @app.post("/v1/embeddings", openapi_extra=wire.openapi_body(wire.EmbeddingRequest))
    async def embeddings(request: Request) -> dict:
        body: wire.EmbeddingRequest = await json_body(request, wire.EmbeddingRequest)
        if body.model not in EMBED_MODELS:
            raise not_found(
                f"The model `{body.model}` does not exist; embeddings come from {EMBED_MODELS[0]}.",
                param="model",
                code="model_not_found",
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not isinstance(t, str) or not t for t in texts) or len(texts) > 2048:
            raise bad_request(
                "'input' must be a non-empty string or a list of 1-2048 non-empty strings.", param="input"
            )
        if body.dimensions is not None and body.dimensions != 384:
            raise bad_request(
                "minilm embeddings have 384 dimensions; omit 'dimensions' or pass 384.", param="dimensions"
            )
        cancel = threading.Event()
        vectors, n_tokens = await until_disconnect(
            request, asyncio.to_thread(embedder.encode, texts, cancel), cancel
        )
        data = []
        for i, v in enumerate(vectors):
            emb: Any = (
                base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
                if body.encoding_format == "base64"
                else v
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    @app.get("/v1/tunesmith/stats")
    def model_stats() -> dict:
        return {"object": "list", "data": stats.summary()}

    @app.get("/v1/tunesmith/engine")
    def engine_state() -> dict:
        """What the serving engine holds: loaded models/adapters and the sizes of the batches it ran."""
        engine = app.state.engine
        return {"loaded": engine.loaded(), "batches": list(engine.batches), "loads": engine.loads}


# --------------------------------------------------------------------------- model resolution


def resolve_model(app: FastAPI, name: str) -> Any:
    """A model id -> ``ModelRef``: a base, a fine-tuned ``ft:`` model or one of its checkpoints."""
    from tunesmith.models.inference import locate_run_weights
    from tunesmith.serve.aliases import resolve_alias
    from tunesmith.serve.app import BASE_MODELS
    from tunesmith.serve.engine import ModelRef
    from tunesmith.train.checkpoints import materialize_checkpoint

    name = resolve_alias(app, name)  # `prod` -> the model the alias points at (serve/aliases.py)
    store: Store = app.state.store
    settings = app.state.settings
    missing = not_found(
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )
    if name in BASE_MODELS or name in settings.extra_base_models:
        return ModelRef(base=name)
    if not name.startswith("ft:") or name in store.deleted_models():
        raise missing
    job = store.job_by_model(name)
    if job is not None and job["status"] == "succeeded":
        folder, base = Path(job["run_dir"]), job["model"]
    else:
        ckpt = store.checkpoint_by_model(name)
        if ckpt is None or not Path(ckpt["path"]).exists():
            raise missing
        job = store.get_job(ckpt["job_id"]) or {}
        folder, base = materialize_checkpoint(Path(ckpt["path"]), Path(job["run_dir"])), job["model"]
    kind, path = locate_run_weights(folder)
    return ModelRef(base=base, weights=path, kind=kind)


def _message(m: wire.ChatMessage, i: int) -> dict[str, Any]:
    content = m.content
    if isinstance(content, list):
        parts = []
        for p in content:
            if p.get("type") not in ("text", None) or not isinstance(p.get("text"), str):
                raise bad_request(
                    f"messages[{i}].content: only text parts are supported (got {p.get('type')!r}).",
                    param=f"messages.{i}.content",
                )
            parts.append(p["text"])
        content = "".join(parts)
    if content is None:
        if not m.tool_calls:
            raise bad_request(f"messages[{i}] has no content.", param=f"messages.{i}.content")
        content = ""
    role = "system" if m.role == "developer" else m.role
    return {"role": role, "content": content, **tools_mod.history_message(m, i)}


@dataclasses.dataclass(frozen=True)
class _Job:
    """What the route hands the engine besides the conversation: the checked prompt ids, the event that
    cancels the request and its wall-clock budget."""

    prompt: list[int]
    cancel: threading.Event
    budget_s: float
    tools: tools_mod.ToolRequest | None = None


def _settings(body: wire.ChatRequest, max_tokens: int) -> Any:
    from tunesmith.models.generate import GenerationSettings

    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4 or any(not s for s in stop):
        raise bad_request("'stop' takes up to 4 non-empty strings.", param="stop")
    temperature = 1.0 if body.temperature is None else body.temperature
    return GenerationSettings(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=body.top_p or 1.0,
        stop=stop,
        seed=body.seed,
    )


def _response_schema(body: wire.ChatRequest) -> dict[str, Any] | None:
    """None for text; {} for json_object; the JSON schema for json_schema (checked to be a valid schema)."""
    rf = body.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {}
    js = rf.json_schema or {}
    if not isinstance(js.get("name"), str) or not js["name"]:
        raise bad_request(
            "response_format.json_schema.name is required.", param="response_format.json_schema.name"
        )
    schema = js.get("schema")
    if not isinstance(schema, dict):
        raise bad_request(
            "response_format.json_schema.schema must be a JSON schema object.",
            param="response_format.json_schema.schema",
        )
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise bad_request(
            f"response_format.json_schema.schema is not a valid JSON schema: {exc.message}",
            param="response_format.json_schema.schema",
        ) from None
    return schema


def _with_json_rule(messages: list[dict[str, Any]], schema: dict | None) -> list[dict[str, Any]]:
    """The conversation as generated: with the JSON instruction in the system turn for json formats."""
    if schema is None:
        return messages
    rule = (
        "Answer with one JSON object only, no other text."
        if not schema
        else f"Answer with one JSON object only, no other text, that validates against this JSON schema: {json.dumps(schema)}"
    )
    return (
        [{"role": "system", "content": rule}, *messages]
        if messages[0]["role"] != "system"
        else [{"role": "system", "content": messages[0]["content"] + "\n\n" + rule}, *messages[1:]]
    )


async def _generate(
    app: FastAPI, ref: Any, msgs: list[dict[str, Any]], settings: Any, schema: dict | None, job: _Job
) -> Any:
    engine = app.state.engine
    must_call = job.tools is not None and job.tools.must_call
    if schema is None and not must_call:
        return await _run(engine, ref, msgs, settings, job)
    gen = None
    for attempt in range(JSON_RETRIES + 1):
        s = (
            settings
            if attempt == 0
            else dataclasses.replace(
                settings, temperature=max(settings.temperature, 0.7), seed=(settings.seed or 0) + attempt
            )
        )
        gen = await _run(engine, ref, msgs, s, job)
        if job.tools is not None and job.tools.accepts(gen.text):
            return gen
        if schema is not None and _valid_json(gen.text, schema):
            return gen
    if job.tools is not None:
        raise tools_mod.failed(gen.text if gen else "", job.tools, JSON_RETRIES + 1)
    raise APIError(
        500,
        f"The model did not produce valid JSON for the requested response_format in {JSON_RETRIES + 1} "
        f"attempts (last answer: {gen.text[:200]!r}).",
        code="invalid_json_output",
    )


async def _run(engine: Any, ref: Any, messages: list[dict[str, Any]], settings: Any, job: _Job) -> Any:
    from tunesmith.errors import TunesmithError
    from tunesmith.serve.engine import Cancelled

    fut = engine.submit(ref, messages, settings, prompt=job.prompt, cancel=job.cancel, budget_s=job.budget_s)
    try:
        return await asyncio.wrap_future(fut)
    except Cancelled:
        raise APIError(499, "The request was cancelled.", code="cancelled") from None
    except TunesmithError as exc:
        raise bad_request(f"{exc.message}" + (f" {exc.hint}" if exc.hint else "")) from None


def _valid_json(text: str, schema: dict) -> bool:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    if not schema:
        return isinstance(obj, dict)
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(obj)


def _usage(gen: Any) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }


def _chunker(cid: str, created: int, model: str, include_usage: bool) -> Any:
    def chunk(delta: dict, finish: str | None = None, choices: bool = True, use: dict | None = None) -> str:
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if choices
            else [],
        }
        if include_usage:
            c["usage"] = use
        return f"data: {json.dumps(c)}\n\n"

    return chunk


def _answer(gen: Any, req: tools_mod.ToolRequest | None) -> tuple[dict[str, Any], str]:
    """The assistant message and ``finish_reason`` of ``gen``: with tools (not ``tool_choice: none``) the
    calls the answer makes, as ``tool_calls`` with ``finish_reason`` "tool_calls" and the text before them
    as ``content`` (null when there is none)."""
    message: dict[str, Any] = {"role": "assistant", "content": gen.text, "refusal": None}
    if req is None or not req.parses:
        return message, gen.finish_reason
    parsed, calls = req.calls(gen.text)
    if not calls:
        return message, gen.finish_reason
    message["content"] = parsed.content or None
    message["tool_calls"] = tools_mod.wire_calls(calls)
    return message, "tool_calls"


async def _sse(
    cid: str,
    created: int,
    model: str,
    gen: Any,
    usage: dict,
    include_usage: bool,
    tok: Any,
    req: tools_mod.ToolRequest | None = None,
) -> Any:
    """A finished answer as SSE chunks (used when the answer had to be validated before sending)."""
    chunk = _chunker(cid, created, model, include_usage)
    message, finish_reason = _answer(gen, req)
    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(message["content"] or "", tok):
        yield chunk({"content": piece})
    for delta in tools_mod.call_deltas(message.get("tool_calls") or [], lambda t: _pieces(t, tok)):
        yield chunk(delta)
    yield chunk({}, finish_reason)
    if include_usage:
        yield chunk({}, choices=False, use=usage)
    yield "data: [DONE]\n\n"


def _pieces(text: str, tok: Any) -> list[str]:
    """Per-token text pieces whose concatenation is exactly ``text``."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out, prev = [], ""
    for i in range(1, len(ids) + 1):
        cur = tok.decode(ids[:i])
        if cur.startswith(prev) and len(cur) > len(prev) and "\ufffd" not in cur[len(prev) :]:
            out.append(cur[len(prev) :])
            prev = cur
    if prev != text:
        out.append(text[len(prev) :] if text.startswith(prev) else text)
        if not text.startswith(prev):
            out = [text]
    return out


# --------------------------------------------------------------------------- embeddings + stats


class _Embedder:
    """MiniLM embeddings in chunks of ``EMBED_CHUNK`` texts, the model lock held per chunk: a request for
    2,048 inputs does not hold every other embedding request for its whole duration, and it stops at the
    next chunk when its client goes away."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def encode(
        self, texts: list[str], cancel: threading.Event | None = None
    ) -> tuple[list[list[float]], int]:
        from tunesmith.serve.engine import Cancelled

        vectors: list[list[float]] = []
        n = 0
        for start in range(0, len(texts), EMBED_CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled("the embeddings request was cancelled")
            part = texts[start : start + EMBED_CHUNK]
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    from tunesmith.models.load import minilm_dir

                    self._model = SentenceTransformer(str(minilm_dir()), device="cpu")
                vecs = self._model.encode(
                    part, batch_size=EMBED_CHUNK, convert_to_numpy=True, normalize_embeddings=True
                )
                n += sum(
                    len(ids) for ids in self._model.tokenizer(part, add_special_tokens=True)["input_ids"]
                )
            vectors += [v.astype("float32").tolist() for v in vecs]
        return vectors, n


class Stats:
    """Per-model request count, completion tokens and latency percentiles (in memory)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lat: dict[str, list[float]] = {}
        self._tokens: dict[str, int] = {}

    def add(self, model: str, latency_ms: float, tokens: int) -> None:
        with self._lock:
            self._lat.setdefault(model, []).append(latency_ms)
            self._tokens[model] = self._tokens.get(model, 0) + tokens

    def summary(self) -> list[dict[str, Any]]:
        with self._lock:
            return [latency_summary(m, lat, self._tokens.get(m, 0)) for m, lat in self._lat.items()]


def latency_summary(model: str, lat: list[float], tokens: int) -> dict[str, Any]:
    s = sorted(lat)

    def pct(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 1) if s else 0.0

    return {
        "model": model,
        "requests": len(s),
        "completion_tokens": tokens,
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "mean_ms": round(sum(s) / len(s), 1) if s else 0.0,
    }
