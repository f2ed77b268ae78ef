"""Model aliases (``prod``, ``staging``): names the chat endpoint resolves to a served model, moved through the
release gate, rolled back in one call, every move in an audit log.

Routes (all under the API key, like every ``/v1`` route):

- ``GET /v1/tunesmith/aliases``: every alias, its model, who moved it last and when.
- ``POST /v1/tunesmith/aliases/{name}`` ``{"model", "evaluation_id"?, "override_reason"?}``: point the alias at
  a model. Allowed when ``evaluation_id`` names a finished evaluation *of that model* whose gate passed;
  otherwise only with an ``override_reason``, which is recorded in the audit log with the gate's verdict.
- ``POST /v1/tunesmith/aliases/{name}/rollback``: back to the model before the current one (repeatable: each
  rollback goes one further back).
- ``GET /v1/tunesmith/aliases/{name}/history``: the audit log, newest first.

Who moved it: the caller's API key, identified by ``key-`` + the first 8 hex digits of its SHA-256 (the key
itself is never stored), or ``anonymous`` on a server without keys.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.serve.errors import bad_request, not_found
from tunesmith.serve.wbstore import WorkbenchStore

ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class MoveAlias(BaseModel):
    """Body of ``POST /v1/tunesmith/aliases/{name}``."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = Field(min_length=1, max_length=256, description="The served model id to point the alias at.")
    evaluation_id: str | None = Field(
        None, max_length=64, description="A finished evaluation of this model (its gate decides)."
    )
    override_reason: str | None = Field(
        None, max_length=500, description="Required when the gate did not pass (or no evaluation is given)."
    )


def actor(request: Request) -> str:
    """Who made the request: ``key-<8 hex>`` of the presented API key, or ``anonymous``."""
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not key or not request.app.state.settings.api_keys:
        return "anonymous"
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def resolve_alias(app: FastAPI, name: str) -> str:
    """The model an alias points at, or ``name`` itself when it is not an alias."""
    wb: WorkbenchStore | None = getattr(app.state, "wb", None)
    if wb is None or not ALIAS.match(name):
        return name
    row = wb.alias(name)
    return row["model"] if row else name


def rollback_target(history: list[dict[str, Any]]) -> str | None:
    """The model a rollback goes back to: the history (newest first) replayed as a stack of moves."""
    stack: list[str] = []
    for ev in reversed(history):
        if ev["action"] == "rollback":
            stack.pop()
        else:
            stack.append(ev["model"])
    return stack[-2] if len(stack) >= 2 else None


def add_routes(app: FastAPI) -> None:
    from tunesmith.serve.app import BASE_MODELS, all_models, json_body

    wb: WorkbenchStore = app.state.wb

    def _check_name(name: str) -> None:
        if not ALIAS.match(name) or name in BASE_MODELS or name == "minilm":
            raise bad_request(
                f"{name!r} is not a valid alias: 1-32 of a-z, 0-9, '_' and '-', starting with a letter, "
                "and not a base model's name.",
                param="name",
            )

    @app.get("/v1/tunesmith/aliases")
    def list_aliases() -> dict:
        return {"object": "list", "data": wb.aliases()}

    @app.get("/v1/tunesmith/aliases/{name}/history")
    def history(name: str) -> dict:
        _check_name(name)
        return {"object": "list", "data": wb.alias_history(name)}

    @app.post("/v1/tunesmith/aliases/{name}")
    async def move(name: str, request: Request) -> dict:
        _check_name(name)
        body: MoveAlias = await json_body(request, MoveAlias)
        if not any(m["id"] == body.model for m in all_models(app.state.store, app.state.settings)):
            raise not_found(
                f"The model `{body.model}` does not exist.", param="model", code="model_not_found"
            )
        if body.model == "minilm":
            raise bad_request("minilm is an embedding model; an alias serves chat.", param="model")
        gate = None
        if body.evaluation_id:
            task = wb.task(body.evaluation_id)
            if task is None or task["kind"] != "eval":
                raise not_found(f"No such evaluation: {body.evaluation_id}", param="evaluation_id")
            if task["params"].get("model") != body.model:
                raise bad_request(
                    f"Evaluation {body.evaluation_id} evaluated {task['params'].get('model')}, not {body.model}.",
                    param="evaluation_id",
                )
            if task["status"] != "succeeded":
                raise bad_request(
                    f"Evaluation {body.evaluation_id} is {task['status']}; wait for it to finish.",
                    param="evaluation_id",
                )
            gate = bool(task["result"]["report"]["gate"]["passed"])
        reason = (body.override_reason or "").strip()
        if not gate and not reason:
            why = "its gate did not pass" if gate is False else "no evaluation was given"
            raise bad_request(
                f"Cannot move {name} to {body.model}: {why}. Give an override_reason to move it anyway "
                "(it is recorded in the audit log), or evaluate the model and pass evaluation_id.",
                param="override_reason",
                code="gate_not_passed",
            )
        current = wb.alias(name)
        if current and current["model"] == body.model:
            raise bad_request(f"{name} already points at {body.model}.", param="model")
        event = wb.move_alias(
            name,
            body.model,
            actor(request),
            "set",
            evaluation_id=body.evaluation_id,
            gate_passed=None if gate is None else int(gate),
            override_reason=reason or None,
        )
        return {"object": "alias", "name": name, "model": body.model, "event": event}

    @app.post("/v1/tunesmith/aliases/{name}/rollback")
    def rollback(name: str, request: Request) -> dict:
        _check_name(name)
        if wb.alias(name) is None:
            raise not_found(f"No such alias: {name}", param="name")
        target = rollback_target(wb.alias_history(name))
        if target is not None and not any(
            m["id"] == target for m in all_models(app.state.store, app.state.settings)
        ):
            raise bad_request(
                f"{name} would roll back to {target}, which has been deleted; move the alias to a model instead.",
                param="name",
                code="model_not_found",
            )
        if target is None:
            raise bad_request(
                f"{name} has no earlier model to roll back to.", param="name", code="nothing_to_roll_back"
            )
        event = wb.move_alias(name, target, actor(request), "rollback")
        return {"object": "alias", "name": name, "model": target, "event": event}
