"""Remote backend: fine-tune on any OpenAI-compatible fine-tuning API with the official SDK.

    validate locally (tunesmith's data checks) -> convert to OpenAI's JSONL (chat or DPO lines) -> upload
    -> create the job -> follow its events until it ends

Evaluating the fine-tuned model on the hold-out is ``tunesmith.eval.remote.evaluate_remote``; the two steps
together (what ``tunesmith train --backend remote`` runs) are ``tunesmith.workflows.remote.run``.

Design choices:
- Validation is local and complete before anything is uploaded: a broken file never leaves the machine.
- Every supervised task (chat, completion, classification, extraction) is uploaded as chat lines through
  ``to_chat`` with the same system prompt tunesmith itself would train with; preference data becomes
  OpenAI DPO lines (``input`` / ``preferred_output`` / ``non_preferred_output``).
- Hyperparameters map as: ``n_epochs`` = ``train.epochs`` (rounded up), ``batch_size`` = ``train.batch_size``,
  ``learning_rate_multiplier`` = ``train.lr`` / tunesmith's default lr (so "auto" when ``train.lr`` is
  unset), ``seed`` = ``train.seed``, DPO ``beta`` = ``train.beta``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.results.eval import EvalReport

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RemoteResult:
    job_id: str
    status: str
    fine_tuned_model: str | None
    events: list[str]
    task: str
    system_prompt: str | None
    report: EvalReport | None = None  # the hold-out evaluation, filled in by tunesmith.workflows.remote


def train_remote(
    cfg: ProjectConfig,
    client: Any,
    *,
    on_event: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float = 24 * 3600,
) -> RemoteResult:
    """Run ``cfg`` as a fine-tuning job on the API behind ``client`` (an ``openai.OpenAI``)."""
    import openai

    emit = on_event or (lambda message: None)
    lines, task, system = openai_lines(cfg)
    try:
        upload = client.files.create(file=("train.jsonl", lines), purpose="fine-tune")
        if getattr(upload, "status", None) == "error":
            raise TunesmithError(
                f"The remote API rejected the training file: {upload.status_details}",
                "Run `tunesmith data check` on it; the remote checks may be stricter.",
            )
        job = client.fine_tuning.jobs.create(**job_request(cfg, upload.id, task))
        emit(f"created remote job {job.id} on {client.base_url}")
        events, job = follow(client, job.id, emit, poll_s, timeout_s)
    except openai.APIStatusError as exc:
        raise TunesmithError(
            f"The remote fine-tuning API answered {exc.status_code}: {exc.message}",
            "Check --base-url, the API key and that the base model is available there.",
        ) from None
    except openai.APIConnectionError as exc:
        raise TunesmithError(
            f"Cannot reach the fine-tuning API at {client.base_url}: {exc}", "Check --base-url."
        ) from None
    if job.status != "succeeded":
        err = job.error.message if job.error else job.status
        raise TunesmithError(f"Remote job {job.id} ended {job.status}: {err}", "See its events above.")
    return RemoteResult(job.id, job.status, job.fine_tuned_model, events, task, system)


def openai_lines(cfg: ProjectConfig) -> tuple[bytes, str, str | None]:
    """The training file as OpenAI JSONL, after tunesmith's own checks (raises on any data error)."""
    from tunesmith.data.formats import Columns, default_system_prompt, load_records_or_raise, to_chat

    if cfg.data.train is None:
        raise TunesmithError("data.train is not set.", "Point data.train at the training file.")
    columns = Columns(cfg.data.text_field, cfg.data.label_field, cfg.data.fields_field)
    loaded = load_records_or_raise(cfg.data.train, cfg.data.task, columns)
    task = loaded.task
    if task in ("text", None):
        raise TunesmithError(
            f"{cfg.data.train} holds raw text; OpenAI-compatible fine-tuning takes chat or preference data.",
            "Use chat/classification/extraction/completion data, or train continued pre-training locally.",
        )
    system = cfg.data.system_prompt or default_system_prompt(loaded.rows, task)
    out = []
    for row in loaded.rows:
        if task == "preference":
            out.append(
                {
                    "input": {"messages": row["prompt"]},
                    "preferred_output": row["chosen"],
                    "non_preferred_output": row["rejected"],
                }
            )
        else:
            out.append({"messages": to_chat(row, task, system)})
    return ("\n".join(json.dumps(o, ensure_ascii=False) for o in out) + "\n").encode(), task, system


def job_request(cfg: ProjectConfig, file_id: str, task: str) -> dict[str, Any]:
    t = cfg.train
    default_lr = 2e-5 if t.finetune == "full" else 2e-4
    hyper: dict[str, Any] = {
        "n_epochs": "auto" if t.epochs == "auto" else max(1, math.ceil(t.epochs)),
        "batch_size": t.batch_size,  # "auto" passes through: the API chooses
        "learning_rate_multiplier": (t.lr / default_lr) if t.lr is not None else "auto",
    }
    kind = "dpo" if task == "preference" else "supervised"
    if kind == "dpo":
        hyper["beta"] = t.beta
    req: dict[str, Any] = {
        "model": cfg.model.name,
        "training_file": file_id,
        "seed": t.seed,
        "method": {"type": kind, kind: {"hyperparameters": hyper}},
    }
    if t.run_name:
        req["suffix"] = t.run_name[:64]
    return req


def follow(
    client: Any, job_id: str, emit: Callable[[str], None], poll_s: float, timeout_s: float
) -> tuple[list[str], Any]:
    """Print each new event once, oldest first, until the job ends."""
    seen: set[str] = set()
    messages: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        fresh = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=100).data if e.id not in seen]
        for e in reversed(fresh):  # the API lists newest first
            seen.add(e.id)
            messages.append(e.message)
            emit(e.message)
        if job.status in TERMINAL:
            return messages, job
        if time.monotonic() > deadline:
            raise TunesmithError(
                f"Remote job {job_id} did not finish in {timeout_s:.0f} s (status {job.status}).",
                "It keeps running remotely; follow it with the provider's tools.",
            )
        time.sleep(poll_s)


def remote_client(base_url: str, api_key: str | None) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=2)
