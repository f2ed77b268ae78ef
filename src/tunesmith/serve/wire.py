"""Request bodies (pydantic, validated into 400s) and the wire shapes of files, jobs, events, checkpoints.

Wire shapes follow the openai SDK's types exactly, so ``_strict_response_validation=True`` passes: every
required field present, ``error`` is null unless the job failed, ``status`` only takes the SDK's six
values plus ``paused`` (internal states never leak).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]
# OpenAI's id alphabet: letters, digits, '-' and '_' (no ':' which separates the parts of an ft: id, no '/',
# no '.', no control characters).
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
SUFFIX_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
INT64 = 2**63 - 1
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
ShortText = Annotated[str, Field(max_length=256)]


class _Body(BaseModel):
    # Unknown fields are ignored like OpenAI does (SDKs add new optional fields over time). Strict: no
    # coercion ("10" is not 10, true is not 1); allow_inf_nan=False: 1e999 parses to inf and is refused.
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class Hyper(_Body):
    n_epochs: Auto | int = Field("auto", description="Passes over the data (1-50).")
    batch_size: Auto | int = Field("auto", description="Examples per step (1-256).")
    learning_rate_multiplier: Auto | float = Field(
        "auto", description="Multiplier on tunesmith's default lr, in (0, 1000]."
    )
    beta: Auto | float = Field("auto", description="DPO beta in (0, 2].")


class MethodSection(_Body):
    hyperparameters: Hyper = Field(default_factory=Hyper)


class ReinforcementSection(_Body):
    """OpenAI's reinforcement method: a grader (OpenAI's grader JSON, tunesmith.graders) and hyperparameters.
    OpenAI's compute_multiplier, eval_interval, eval_samples and reasoning_effort are ignored."""

    grader: dict[str, Any] | None = None
    hyperparameters: Hyper = Field(default_factory=Hyper)


class Method(_Body):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: MethodSection | None = None
    dpo: MethodSection | None = None
    reinforcement: ReinforcementSection | None = None


class JobCreate(_Body):
    model: str = Field(min_length=1, max_length=512)
    training_file: Id
    validation_file: Id | None = None
    suffix: str | None = Field(
        None, pattern=SUFFIX_PATTERN, description="1-64 letters, digits, '-' or '_' (part of the ft: id)."
    )
    seed: int | None = Field(None, ge=0, le=2147483647)
    method: Method | None = None
    hyperparameters: Hyper | None = None
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = Field(None, max_length=16)


def check_hyper(h: Hyper, prefix: str) -> str | None:
    """The dotted name of the first out-of-range hyperparameter, with the rule (every bound is finite)."""
    checks = [
        ("n_epochs", h.n_epochs, lambda v: 1 <= v <= 50, "an integer from 1 to 50"),
        ("batch_size", h.batch_size, lambda v: 1 <= v <= 256, "an integer from 1 to 256"),
        (
            "learning_rate_multiplier",
            h.learning_rate_multiplier,
            lambda v: math.isfinite(v) and 0 < v <= 1000,
            "a finite number > 0 and <= 1000",
        ),
        ("beta", h.beta, lambda v: math.isfinite(v) and 0 < v <= 2, "a number in (0, 2]"),
    ]
    for name, value, ok, rule in checks:
        if value != "auto" and not ok(value):
            return f"{prefix}.{name}|{rule}"
    return None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: ShortText | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: ShortText | None = None


class StreamOptions(_Body):
    include_usage: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ToolFunction(_Body):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="1-64 letters, digits, '_' or '-'.")
    description: str | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: ToolFunction


class NamedFunction(_Body):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class ChatRequest(_Body):
    model: str = Field(min_length=1, max_length=512)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=1)
    stop: ShortText | list[ShortText] | None = Field(None)
    seed: int | None = Field(None, ge=-INT64 - 1, le=INT64)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: ShortText | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1, max_length=512)
    input: str | list[str] = Field(...)
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: int | None = Field(None, ge=1, le=65536)


# --------------------------------------------------------------------------- wire shapes


def file_obj(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": row["status"],
    }
    if row.get("status_details"):
        out["status_details"] = row["status_details"]
    return out


def job_obj(row: dict[str, Any]) -> dict[str, Any]:
    method = json.loads(row["method"])
    hyper = json.loads(row["hyperparameters"])
    status = row["status"]
    err = json.loads(row["error"]) if row.get("error") else None
    return {
        "id": row["id"],
        "object": "fine_tuning.job",
        "created_at": row["created_at"],
        "model": row["model"],
        "organization_id": "org-local",
        "status": status,
        "training_file": row["training_file"],
        "validation_file": row["validation_file"],
        "fine_tuned_model": row["fine_tuned_model"],
        "finished_at": row["finished_at"],
        "trained_tokens": row["trained_tokens"],
        "result_files": [],
        "hyperparameters": {k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
        "seed": row["seed"],
        "error": err if status == "failed" else None,
        "estimated_finish": None,
        "integrations": None,
        "metadata": json.loads(row["metadata"]) if row.get("metadata") else None,
        "method": method,
    }


def event_obj(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "fine_tuning.job.event",
        "created_at": row["created_at"],
        "level": row["level"],
        "message": row["message"],
        "data": json.loads(row["data"]) if row.get("data") else None,
        "type": row["type"],
    }


def checkpoint_obj(row: dict[str, Any]) -> dict[str, Any]:
    metrics = json.loads(row["metrics"])
    return {
        "id": row["id"],
        "object": "fine_tuning.job.checkpoint",
        "created_at": row["created_at"],
        "fine_tuned_model_checkpoint": row["model_name"],
        "fine_tuning_job_id": row["job_id"],
        "step_number": row["step"],
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
    }


def page(data: list[dict[str, Any]], has_more: bool, first_last: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"object": "list", "data": data, "has_more": has_more}
    if first_last:
        out["first_id"] = data[0]["id"] if data else None
        out["last_id"] = data[-1]["id"] if data else None
    return out


# --------------------------------------------------------------------------- OpenAPI (for /docs and schemathesis)

SCHEMAS: dict[str, Any] = {}  # component schemas of the request bodies, added to /openapi.json


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is parsed by hand into ``model`` (so the published
    schema still describes it)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    SCHEMAS.update(schema.pop("$defs", {}))
    SCHEMAS[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {
                            "type": "string",
                            "enum": ["fine-tune", "assistants", "batch", "vision", "user_data", "evals"],
                        },
                    },
                }
            }
        },
    }
}
