"""The OpenAI-compatible HTTP API: files, fine-tuning jobs, models (this module); chat and embeddings
(``serve.chat``); the dashboard (``serve.dashboard``).

Design choices:
- ``create_app(settings)`` builds everything from a ``ServeSettings``; tests run the app in process
  through ``httpx2.ASGITransport`` and the real ``openai`` SDK, ``tunesmith serve`` runs it with uvicorn.
- Request bodies are parsed by hand (JSON, then pydantic) so every problem is a 400 in OpenAI's shape
  naming the field (``param``), never FastAPI's 422.
- Auth and body limits live in ``serve.guard`` (keys on every route but the dashboard shell, constant-time
  comparison, limits enforced while the body arrives). CORS is off unless origins are given.
- Uploaded files are stored as ``files/<id>.jsonl`` under the data folder; the path is built from a
  server-made id that is re-validated (``jobs.file_path``), never from the client's filename.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from tunesmith.serve import jobs as jobs_mod
from tunesmith.serve import wire
from tunesmith.serve.errors import (
    APIError,
    bad_request,
    from_validation_error,
    install_handlers,
    not_found,
)
from tunesmith.serve.guard import Guard, check_keys
from tunesmith.serve.store import TERMINAL, Store, new_id

UPLOAD_PURPOSES = ("fine-tune", "assistants", "batch", "vision", "user_data", "evals")
BASE_MODELS = ("smollm2-135m-instruct", "tiny")


@dataclass
class ServeSettings:
    """Everything `tunesmith serve` can set."""

    data_dir: Path
    api_keys: list[str] = field(default_factory=list)
    concurrency: int = 1
    start_workers: bool = True
    train_overrides: list[str] = field(default_factory=list)
    max_upload_bytes: int = 512 * 1024 * 1024
    max_body_bytes: int = 16 * 1024 * 1024  # every request body except uploads (JSON)
    max_context_tokens: int | None = None  # cap on prompt + max_tokens (None: the model's own context)
    request_budget_s: float = 300.0  # wall-clock cap on one chat request's generation (then "length")
    long_prompt_tokens: int = 512  # prompts longer than this are prefilled in chunks, between short batches
    log_requests: bool = False
    cors_origins: list[str] = field(default_factory=list)
    max_batch: int = 8
    batch_window_s: float = 0.01
    model_budget_bytes: int = 8 << 30
    extra_base_models: list[str] = field(default_factory=list)
    stop_grace_s: float = 10.0


def create_app(settings: ServeSettings) -> FastAPI:
    from tunesmith.serve.engine import Engine

    settings.api_keys = check_keys(settings.api_keys)
    settings.data_dir = Path(settings.data_dir).resolve()
    (settings.data_dir / "files").mkdir(parents=True, exist_ok=True)
    store = Store(settings.data_dir / "tunesmith.db")
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if settings.start_workers:  # training runs in worker processes, never in this one
            app.state.supervisor = jobs_mod.Supervisor(
                settings.data_dir,
                settings.concurrency,
                settings.train_overrides,
                stop_grace_s=settings.stop_grace_s,
            )
            app.state.supervisor.start()
        yield
        if app.state.supervisor:
            app.state.supervisor.stop()
        app.state.engine.close()

    app = FastAPI(title="tunesmith", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.settings, app.state.store = settings, store
    app.state.engine = Engine(
        max_batch=settings.max_batch,
        batch_window_s=settings.batch_window_s,
        budget_bytes=settings.model_budget_bytes,
        long_prompt_tokens=settings.long_prompt_tokens,
    )
    app.state.supervisor = None
    install_handlers(app)
    # The guard goes in first so that CORS (added after it) wraps it: a browser's preflight carries no key.
    app.add_middleware(
        Guard,
        keys=settings.api_keys,
        max_upload_bytes=settings.max_upload_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    _file_routes(app, store, settings)
    _job_routes(app, store, settings)
    _model_routes(app, store, settings)
    from tunesmith.serve import chat, dashboard, workbench

    chat.add_routes(app)
    dashboard.add_routes(app)
    workbench.add_routes(app)  # /workbench pages, aliases, evaluations, review (serve/workbench.py)
    _publish_body_schemas(app)
    return app


def _publish_body_schemas(app: FastAPI) -> None:
    """/openapi.json with the request-body models (parsed by hand, see ``json_body``) as components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(wire.SCHEMAS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def json_body(request: Request, model: type) -> Any:
    """The request body parsed into ``model``.

    Raises:
        APIError: 400 ``invalid_json`` when the body is not a JSON object (bad syntax or UTF-8, ``NaN``,
            > 4,300-digit integers, unpaired surrogate escapes); 400 ``invalid_value`` naming the field when
            the object does not validate.
    """
    raw = await request.body()
    # a large body is parsed off the event loop, so a megabyte of JSON does not pause other requests
    if len(raw) > 256 * 1024:
        return await asyncio.to_thread(_parse_body, raw, model)
    return _parse_body(raw, model)


def _parse_body(raw: bytes, model: type) -> Any:
    try:
        data = json.loads(raw or b"null", parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, > 4,300-digit integers
        raise bad_request(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if b"\\u" in raw and _has_lone_surrogate(data):  # JSON escapes can spell text UTF-8 cannot hold
        raise bad_request(
            "The request body holds an unpaired UTF-16 surrogate escape (e.g. \\ud800), which is not text.",
            code="invalid_json",
        )
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (Python's parser accepts them by default)."""
    raise ValueError(f"{name} is not a JSON number")


def _limit(value: int, lo: int, hi: int, name: str = "limit") -> int:
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be between {lo} and {hi} (got {value}).", param=name)
    return value


# --------------------------------------------------------------------------- files


def _file_routes(app: FastAPI, store: Store, settings: ServeSettings) -> None:
    @app.post("/v1/files", openapi_extra=wire.UPLOAD_BODY)
    async def upload(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise bad_request(
                "Upload files as multipart/form-data with parts 'file' and 'purpose'.", param="file"
            )
        try:
            form = await request.form(max_part_size=settings.max_upload_bytes)
        except APIError:
            raise  # the body passed the size limit while it was arriving (serve.guard)
        except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's problem
            raise bad_request(f"Could not parse the multipart body: {exc}.", param="file") from None
        purpose, upload_file = form.get("purpose"), form.get("file")
        if not isinstance(purpose, str) or purpose not in UPLOAD_PURPOSES:
            raise bad_request(
                f"'purpose' must be one of {', '.join(UPLOAD_PURPOSES)} (got {purpose!r}).", param="purpose"
            )
        if upload_file is None or isinstance(upload_file, str):
            raise bad_request("Missing the 'file' part (the file's bytes).", param="file")
        filename = _clean_filename(upload_file.filename)
        fid = new_id("file-")
        path = jobs_mod.file_path(settings.data_dir, fid)
        try:  # whatever goes wrong from here on, no file is left behind without its database row
            size = await asyncio.to_thread(_save_upload, upload_file.file, path, settings.max_upload_bytes)
            status, details, task, n = "processed", None, None, None
            if purpose == "fine-tune":
                status, details, task, n = await asyncio.to_thread(_check_training_file, path, filename)
            store.add_file(
                {
                    "id": fid,
                    "filename": filename,
                    "purpose": purpose,
                    "bytes": size,
                    "created_at": int(time.time()),
                    "status": status,
                    "status_details": details,
                    "task": task,
                    "n_examples": n,
                }
            )
        except BaseException:
            path.unlink(missing_ok=True)
            path.with_suffix(".tmp").unlink(missing_ok=True)
            raise
        return JSONResponse(wire.file_obj(store.get_file(fid) or {}))

    @app.get("/v1/files")
    def list_files(
        after: str | None = None, limit: int = 10000, order: str = "desc", purpose: str | None = None
    ) -> dict:
        if order not in ("asc", "desc"):
            raise bad_request("'order' must be asc or desc.", param="order")
        rows, more = store.list_files(purpose, order, after, _limit(limit, 1, 10000))
        return wire.page([wire.file_obj(r) for r in rows], more, first_last=True)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str) -> dict:
        return wire.file_obj(_file(store, file_id))

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str) -> Response:
        _file(store, file_id)
        return Response(
            jobs_mod.file_path(settings.data_dir, file_id).read_bytes(), media_type="application/octet-stream"
        )

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str) -> dict:
        _file(store, file_id)
        store.update_file(file_id, deleted=1)
        jobs_mod.file_path(settings.data_dir, file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}


def _clean_filename(name: str | None) -> str:
    """The client's file name as stored and echoed: base name only, printable, valid UTF-8, <= 255 chars."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(c for c in base if c.isprintable()).encode("utf-8", "replace").decode("utf-8")
    return base[:255] or "upload.jsonl"


def _save_upload(src: Any, path: Path, limit: int) -> int:
    """Copy the uploaded (spooled) file to ``path`` in 1 MiB chunks; its size in bytes.

    Raises:
        APIError: 413 when the file is over ``limit`` bytes (nothing is left on disk).
    """
    tmp, size = path.with_suffix(".tmp"), 0
    src.seek(0)
    with open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                tmp.unlink(missing_ok=True)
                raise APIError(
                    413,
                    f"The file is larger than the limit of {limit:,} bytes.",
                    param="file",
                    code="file_too_large",
                )
            out.write(chunk)
    os.replace(tmp, path)
    return size


def _file(store: Store, file_id: str) -> dict[str, Any]:
    row = store.get_file(file_id)
    if row is None:
        raise not_found(f"No such File object: {file_id}", param="id")
    return row


def _prompt_rows(path: Path) -> int | None:
    """How many prompts ``path`` holds when every line is a prompt ending in a user turn (OpenAI's
    reinforcement fine-tuning rows: ``messages`` plus fields its grader reads), else None."""
    from tunesmith.errors import TunesmithError
    from tunesmith.train.rl_common import load_prompt_rows

    try:
        return len(load_prompt_rows(path))
    except TunesmithError:
        return None


def _check_training_file(path: Path, filename: str) -> tuple[str, str | None, str | None, int | None]:
    """processed/error with the data checker's messages (first problems, 1-based line numbers)."""
    from tunesmith.data.formats import load_data
    from tunesmith.errors import TunesmithError

    try:
        loaded = load_data(path)
    except TunesmithError as exc:
        return "error", f"{filename}: {exc.message}", None, None
    except (ValueError, RecursionError, OSError) as exc:  # a reader fault must not become a 500
        return "error", f"{filename}: the file could not be read ({type(exc).__name__}: {exc}).", None, None
    # prompts without answers on every line: reinforcement fine-tuning data. A chat file where only some
    # lines lack an answer (records parsed beside the errors) stays an error: that is a broken SFT file.
    if loaded.errors and not loaded.records and all(e.code == "no_assistant_message" for e in loaded.errors):
        prompts = _prompt_rows(path)
        if prompts is not None:
            return "processed", None, "prompts", prompts
    if loaded.errors:
        first = "; ".join(f"line {e.line}: {e.code}: {e.message} ({e.hint})" for e in loaded.errors[:3])
        more = f" ... and {len(loaded.errors) - 3} more" if len(loaded.errors) > 3 else ""
        return (
            "error",
            f"Invalid file format: {len(loaded.errors)} problem(s): {first}{more}",
            loaded.task,
            len(loaded.records),
        )
    if loaded.task not in ("chat", "preference"):
        return (
            "error",
            (
                f"{filename} holds {loaded.task} rows; fine-tuning jobs take chat lines "
                '({"messages": [...]}) or DPO lines ({"input", "preferred_output", "non_preferred_output"}).'
            ),
            loaded.task,
            len(loaded.records),
        )
    return "processed", None, loaded.task, len(loaded.records)


# --------------------------------------------------------------------------- jobs


def _job_routes(app: FastAPI, store: Store, settings: ServeSettings) -> None:
    @app.post("/v1/fine_tuning/jobs", openapi_extra=wire.openapi_body(wire.JobCreate))
    async def create_job(request: Request) -> dict:
        body: wire.JobCreate = await json_body(request, wire.JobCreate)
        job = _new_job(store, settings, body)
        return wire.job_obj(job)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, after: str | None = None, limit: int = 20) -> dict:
        meta = {
            k[9:-1]: v
            for k, v in request.query_params.items()
            if k.startswith("metadata[") and k.endswith("]")
        }
        rows, more = store.list_jobs(after, _limit(limit, 1, 1000), meta or None)
        return wire.page([wire.job_obj(r) for r in rows], more)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        return wire.job_obj(_job(store, job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        return wire.job_obj(_stop_job(store, job_id, "cancelled"))

    @app.post("/v1/fine_tuning/jobs/{job_id}/pause")
    def pause(job_id: str) -> dict:
        return wire.job_obj(_stop_job(store, job_id, "paused"))

    @app.post("/v1/fine_tuning/jobs/{job_id}/resume")
    def resume(job_id: str) -> dict:
        job = _job(store, job_id)
        if job["status"] in TERMINAL:
            raise bad_request(
                f"Job {job_id} is {job['status']}; only a paused job can be resumed.",
                param="fine_tuning_job_id",
            )
        store.transition(
            job_id,
            ("paused",),
            event="Job resumed; queued to continue from its last checkpoint",
            status="queued",
            pause_requested=0,
            stop_requested_at=None,
        )
        return wire.job_obj(_job(store, job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str, after: str | None = None, limit: int = 20) -> dict:
        _job(store, job_id)
        rows, more = store.list_events(job_id, after, _limit(limit, 1, 10000))
        return wire.page([wire.event_obj(r) for r in rows], more)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(job_id: str, after: str | None = None, limit: int = 10) -> dict:
        _job(store, job_id)
        rows, more = store.list_checkpoints(job_id, after, _limit(limit, 1, 10000))
        return wire.page([wire.checkpoint_obj(r) for r in rows], more, first_last=True)


def _job(store: Store, job_id: str) -> dict[str, Any]:
    row = store.get_job(job_id)
    if row is None:
        raise not_found(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
    return row


def _new_job(store: Store, settings: ServeSettings, body: wire.JobCreate) -> dict[str, Any]:
    method = body.method or wire.Method(type="supervised")
    if method.type == "reinforcement":
        _check_reinforcement(method, body)
    section = getattr(method, method.type) or wire.MethodSection(
        hyperparameters=body.hyperparameters or wire.Hyper()
    )
    hyper = section.hyperparameters
    problem = wire.check_hyper(hyper, f"method.{method.type}.hyperparameters")
    if problem:
        name, rule = problem.split("|")
        raise bad_request(f"'{name}' must be {rule}.", param=name)
    if method.type == "supervised" and hyper.beta != "auto":
        raise bad_request(
            "beta is a DPO hyperparameter; remove it or use method.type dpo.",
            param="method.supervised.hyperparameters.beta",
        )
    if body.metadata and (
        len(body.metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in body.metadata.items())
    ):
        raise bad_request(
            "metadata holds at most 16 pairs, keys <= 64 and values <= 512 characters.", param="metadata"
        )
    _check_base_model(body.model, settings)
    want = {"dpo": "preference", "reinforcement": "prompts"}.get(method.type, "chat")
    for param in ("training_file", "validation_file"):
        fid = getattr(body, param)
        if fid is None:
            continue
        row = store.get_file(fid)
        if row is None or row["purpose"] != "fine-tune":
            raise bad_request(f"invalid {param}: {fid} (no such file with purpose fine-tune).", param=param)
        if row["status"] == "error":
            raise bad_request(
                f"invalid {param}: {fid} failed the data check: {row['status_details']}",
                param=param,
                code="invalid_training_file",
            )
        if row["task"] != want:
            raise bad_request(
                f"invalid {param}: {fid} holds {row['task']} data but method.type is {method.type} "
                f"(which needs {want} lines).",
                param=param,
                code="invalid_training_file",
            )
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    method_out: dict[str, Any] = {
        "type": method.type,
        method.type: {
            "hyperparameters": hyper.model_dump(exclude={"beta"} if method.type != "dpo" else set())
        },
    }
    if method.type == "reinforcement" and method.reinforcement is not None:
        method_out["reinforcement"]["grader"] = method.reinforcement.grader
    job = {
        "id": new_id("ftjob-"),
        "created_at": int(time.time()),
        "model": body.model,
        "training_file": body.training_file,
        "validation_file": body.validation_file,
        "status": "queued",
        "method": json.dumps(method_out),
        "hyperparameters": json.dumps(hyper.model_dump()),
        "suffix": body.suffix,
        "seed": seed,
        "metadata": json.dumps(body.metadata) if body.metadata else None,
    }
    store.add_job(job, f"Created fine-tuning job: {job['id']}")
    return store.get_job(job["id"]) or job


def _check_reinforcement(method: wire.Method, body: wire.JobCreate) -> None:
    """A reinforcement job needs a grader tunesmith can load (it trains with GRPO against it, docs/rl.md);
    its few probe prompts come from the training file, so a validation file is refused."""
    from tunesmith.errors import TunesmithError
    from tunesmith.graders import load_grader

    section = method.reinforcement
    if section is None or not section.grader:
        raise bad_request(
            "method.reinforcement.grader is required: the grader that scores each sampled answer.",
            param="method.reinforcement.grader",
        )
    try:
        load_grader(section.grader).close()
    except TunesmithError as exc:
        raise bad_request(
            f"invalid grader: {exc.message}" + (f" {exc.hint}" if exc.hint else ""),
            param="method.reinforcement.grader",
        ) from None
    if body.validation_file is not None:
        raise bad_request(
            "validation_file is not used by reinforcement jobs (a few training prompts are kept aside and "
            "graded before and after training); remove it.",
            param="validation_file",
        )


def _check_base_model(name: str, settings: ServeSettings) -> None:
    if name in BASE_MODELS or name in settings.extra_base_models:
        return
    if name.startswith("ft:"):
        raise bad_request(
            "Continuing from a fine-tuned model is not supported yet; give a base model.", param="model"
        )
    raise bad_request(
        f"Unknown base model {name!r}; this server trains {', '.join([*BASE_MODELS, *settings.extra_base_models])}.",
        param="model",
        code="model_not_found",
    )


def _stop_job(store: Store, job_id: str, target: str) -> dict[str, Any]:
    """Cancel or pause: immediate for queued jobs; for running ones, flag the worker and answer at once."""
    verb = "cancel" if target == "cancelled" else "pause"
    for _ in range(3):  # the worker may claim the job between our read and our write
        job = _job(store, job_id)
        status = job["status"]
        if status == target:
            return job  # idempotent
        if status in ("succeeded", "failed", "cancelled"):
            raise bad_request(
                f"Job {job_id} is already {status}; it cannot be {target}.",
                param="fine_tuning_job_id",
                code="job_not_active",
            )
        now = time.time()
        flag = {"cancel_requested": 1} if target == "cancelled" else {"pause_requested": 1}
        done = {"finished_at": int(now)} if target == "cancelled" else {}
        msg = "Job cancelled" if target == "cancelled" else "Job paused"
        if status in ("queued", "validating_files", "paused") and store.transition(
            job_id, (status,), event=msg, status=target, **done
        ):
            return _job(store, job_id)
        if status == "running" and store.transition(
            job_id,
            ("running",),
            event=f"{msg} (the worker stops at the next step)",
            status=target,
            stop_requested_at=now,
            **flag,
            **done,
        ):
            return _job(store, job_id)
    raise APIError(503, f"Could not {verb} {job_id}: the job changed state repeatedly; try again.")


# --------------------------------------------------------------------------- models


def _model_routes(app: FastAPI, store: Store, settings: ServeSettings) -> None:
    @app.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": all_models(store, settings)}

    @app.get("/v1/models/{model:path}")
    def get_model(model: str) -> dict:
        for m in all_models(store, settings):
            if m["id"] == model:
                return m
        raise _model_not_found(model)

    @app.delete("/v1/models/{model:path}")
    def delete_model(model: str) -> dict:
        if model in BASE_MODELS or model in settings.extra_base_models or model == "minilm":
            raise APIError(
                403,
                f"{model} is a base model; only fine-tuned models can be deleted.",
                param="model",
                code="permission_denied",
            )
        if not any(m["id"] == model for m in all_models(store, settings)):
            raise _model_not_found(model)
        store.delete_model(model)
        job = store.job_by_model(model)
        if job:  # a deleted fine-tuned model takes its checkpoints with it
            for c in store.list_checkpoints(job["id"], None, 10_000)[0]:
                store.delete_model(c["model_name"])
        return {"id": model, "object": "model", "deleted": True}


def _model_not_found(model: str) -> APIError:
    return not_found(
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def all_models(store: Store, settings: ServeSettings) -> list[dict[str, Any]]:
    gone = store.deleted_models()
    out = [
        {"id": b, "object": "model", "created": 0, "owned_by": "tunesmith"}
        for b in (*BASE_MODELS, *settings.extra_base_models, "minilm")
    ]
    jobs = store.finished_models()
    for j in jobs:
        if j["fine_tuned_model"] not in gone and j["status"] == "succeeded":
            out.append(
                {
                    "id": j["fine_tuned_model"],
                    "object": "model",
                    "created": j["finished_at"] or j["created_at"],
                    "owned_by": "org-local",
                }
            )
    for c in store.all_checkpoints():
        if c["model_name"] not in gone and Path(c["path"]).exists():
            out.append(
                {
                    "id": c["model_name"],
                    "object": "model",
                    "created": c["created_at"],
                    "owned_by": "org-local",
                }
            )
    return out
