"""The review loop: logged requests (``tunesmith serve --log-requests``) become reviewed training rows.

Routes (under the API key):

- ``GET /v1/tunesmith/review/logs``: logged requests, newest first, filtered by ``model``, ``since``/``until``
  (seconds since the epoch), ``max_confidence`` (low-confidence answers), ``grader`` + ``min_score``/``max_score``
  (a grader's score where one was attached) and ``reviewed`` (``yes``/``no``). Personal data (e-mail, phone,
  card, IBAN: ``data.pii``) is masked in every text and flagged per row.
- ``POST /v1/tunesmith/review/score``: a background task that scores the confidence of every unscored answer.
- ``POST /v1/tunesmith/review/logs/{id}/scores`` ``{"name": "grader:NAME", "value"}``: attach a grader's score.
- ``POST /v1/tunesmith/review/logs/{id}/alternative`` ``{"model", "temperature"?}``: a second answer to the
  same messages from another model (or a sample of the same one), for a side-by-side choice.
- ``POST /v1/tunesmith/review/logs/{id}/correct`` ``{"answer"}``: a corrected answer, saved as an SFT row.
- ``POST /v1/tunesmith/review/logs/{id}/prefer`` ``{"chosen", "rejected"}``: the better of two answers,
  saved as a DPO pair.
- ``GET /v1/tunesmith/review/items`` and ``GET /v1/tunesmith/review/export?kind=sft|dpo&upto=N&pii=mask|keep``:
  the reviewed rows (versioned, ``upto`` rebuilds an older set) as JSONL in the training formats (chat lines;
  OpenAI DPO lines). PII is masked in exports unless ``pii=keep``.
- ``POST /v1/tunesmith/review/retrain``: a new training file (the original training file + the reviewed SFT
  rows) and a fine-tuning job on it; the page then compares the new model with ``prod``
  (``POST /v1/tunesmith/evaluations`` with ``against``) and offers promotion through the gate.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.data.pii import find_pii
from tunesmith.serve.aliases import actor
from tunesmith.serve.errors import bad_request, not_found
from tunesmith.serve.wbstore import WorkbenchStore

PII_TAGS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "iban": "[IBAN]"}


class Correct(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    answer: str = Field(
        min_length=1, max_length=100_000, description="The answer the model should have given."
    )


class Prefer(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    chosen: str = Field(min_length=1, max_length=100_000, description="The better answer.")
    rejected: str = Field(
        max_length=100_000, description="The worse answer (may be empty: no answer at all)."
    )


class Score(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str = Field(pattern=r"^grader:[A-Za-z0-9_.-]{1,64}$", description="grader:NAME")
    value: float = Field(allow_inf_nan=False, ge=-1e9, le=1e9)


class ScoreRun(BaseModel):
    """Body of ``POST /v1/tunesmith/review/score`` (optional: the task takes no settings)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class Alternative(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = Field(min_length=1, max_length=256)
    temperature: float = Field(0.0, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int = Field(128, ge=1, le=4096)


class Retrain(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    training_file: str = Field(min_length=1, max_length=64)
    model: str = Field("smollm2-135m-instruct", max_length=256, description="The base model to train.")
    suffix: str | None = Field("retrain", max_length=64)
    n_epochs: int | None = Field(None, ge=1, le=50)


def mask(text: str) -> tuple[str, list[str]]:
    """``text`` with each e-mail, phone, card and IBAN replaced by a tag, and the kinds found."""
    kinds = []
    for hit in find_pii(text):
        text = text.replace(hit.text, PII_TAGS[hit.kind])
        kinds.append(hit.kind)
    return text, sorted(set(kinds))


def masked_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    out, kinds = [], set()
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            content, found = mask(content)
            kinds.update(found)
        out.append({**m, "content": content})
    return out, sorted(kinds)


def sft_line(item: dict[str, Any], keep_pii: bool) -> dict[str, Any]:
    row = item["row"]
    messages = row["messages"] if keep_pii else masked_messages(row["messages"])[0]
    return {"messages": messages}


def dpo_line(item: dict[str, Any], keep_pii: bool) -> dict[str, Any]:
    row = item["row"]
    prompt = row["prompt"] if keep_pii else masked_messages(row["prompt"])[0]
    chosen, rejected = row["chosen"], row["rejected"]
    if not keep_pii:
        chosen, rejected = mask(chosen)[0], mask(rejected)[0]
    return {
        "input": {"messages": prompt},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def export_lines(wb: WorkbenchStore, kind: str, upto: int | None = None, keep_pii: bool = False) -> list[str]:
    """The reviewed rows of ``kind`` (``sft``/``dpo``) as JSONL lines in the training formats."""
    build = sft_line if kind == "sft" else dpo_line
    return [json.dumps(build(i, keep_pii), ensure_ascii=False) for i in wb.review_items(kind, upto)]


def add_routes(app: FastAPI) -> None:
    from tunesmith.serve.app import json_body

    wb: WorkbenchStore = app.state.wb

    def _log(log_id: int) -> dict[str, Any]:
        for r in app.state.store.request_logs():
            if r["id"] == log_id:
                return r
        raise not_found(f"No such logged request: {log_id}", param="id")

    @app.get("/v1/tunesmith/review/logs")
    def logs(
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        max_confidence: float | None = None,
        grader: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        reviewed: str | None = None,
        limit: int = 100,
    ) -> dict:
        scores, items = wb.scores(), wb.review_items()
        kinds: dict[int, list[str]] = {}
        for it in items:
            kinds.setdefault(it["log_id"], []).append(it["kind"])
        out = []
        for r in reversed(app.state.store.request_logs(model)):
            s = scores.get(r["id"], {})
            if (since is not None and r["created_at"] < since) or (
                until is not None and r["created_at"] > until
            ):
                continue
            if max_confidence is not None and not s.get("confidence", 2.0) <= max_confidence:
                continue
            if grader is not None:
                g = s.get(grader if grader.startswith("grader:") else f"grader:{grader}")
                if (
                    g is None
                    or (min_score is not None and g < min_score)
                    or (max_score is not None and g > max_score)
                ):
                    continue
            if reviewed in ("yes", "no") and (r["id"] in kinds) != (reviewed == "yes"):
                continue
            messages, pii = masked_messages(json.loads(r["messages"]))
            answer, pii_answer = mask(r["response"] or "")
            out.append(
                {
                    "id": r["id"],
                    "created_at": r["created_at"],
                    "model": r["model"],
                    "served_by": wb.alias_at(r["model"], r["created_at"]) or r["model"],
                    "messages": messages,
                    "response": answer,
                    "pii": sorted(set(pii) | set(pii_answer)),
                    "scores": s,
                    "reviewed": kinds.get(r["id"], []),
                }
            )
            if len(out) >= max(1, min(limit, 1000)):
                break
        return {"object": "list", "data": out}

    @app.post("/v1/tunesmith/review/score")
    async def score(request: Request) -> dict:
        # no body is needed; one that is sent must be valid JSON (case bigint-json-500)
        if await request.body():
            await json_body(request, ScoreRun)
        task = wb.add_task("score", {}, actor(request))
        app.state.wb_runner.kick()
        return task

    @app.post("/v1/tunesmith/review/logs/{log_id}/scores")
    async def add_score(log_id: int, request: Request) -> dict:
        body: Score = await json_body(request, Score)
        _log(log_id)
        wb.set_score(log_id, body.name, body.value)
        return {"log_id": log_id, "name": body.name, "value": body.value}

    @app.post("/v1/tunesmith/review/logs/{log_id}/alternative")
    async def alternative(log_id: int, request: Request) -> dict:
        body: Alternative = await json_body(request, Alternative)
        row = _log(log_id)
        text = await _second_answer(app, json.loads(row["messages"]), body)
        masked, pii = mask(text)
        return {"log_id": log_id, "model": body.model, "text": text, "masked": masked, "pii": pii}

    @app.post("/v1/tunesmith/review/logs/{log_id}/correct")
    async def correct(log_id: int, request: Request) -> dict:
        body: Correct = await json_body(request, Correct)
        row = _log(log_id)
        messages = json.loads(row["messages"])
        full = [*messages, {"role": "assistant", "content": body.answer}]
        pii = masked_messages(full)[1]
        app.state.store.correct_log(log_id, body.answer)  # `tunesmith logs export` sees it too
        return _masked_item(wb.add_review_item(log_id, "sft", {"messages": full}, pii, actor(request)))

    @app.post("/v1/tunesmith/review/logs/{log_id}/prefer")
    async def prefer(log_id: int, request: Request) -> dict:
        body: Prefer = await json_body(request, Prefer)
        if body.chosen == body.rejected:
            raise bad_request(
                "chosen and rejected are the same text; a pair needs two different answers.", "rejected"
            )
        messages = json.loads(_log(log_id)["messages"])
        pii = sorted(
            set(masked_messages(messages)[1]) | set(mask(body.chosen)[1]) | set(mask(body.rejected)[1])
        )
        row = {"prompt": messages, "chosen": body.chosen, "rejected": body.rejected}
        return _masked_item(wb.add_review_item(log_id, "dpo", row, pii, actor(request)))

    @app.get("/v1/tunesmith/review/items")
    def items(kind: str | None = None, upto: int | None = None) -> dict:
        if kind not in (None, "sft", "dpo"):
            raise bad_request("kind must be sft or dpo.", param="kind")
        rows = [_masked_item(r) for r in wb.review_items(kind, upto)]  # the export decides about PII
        return {"object": "list", "version": wb.review_version(), "data": rows}

    @app.get("/v1/tunesmith/review/export")
    def export(kind: str = "sft", upto: int | None = None, pii: str = "mask") -> Response:
        if kind not in ("sft", "dpo") or pii not in ("mask", "keep"):
            raise bad_request("kind must be sft or dpo, pii mask or keep.", param="kind")
        lines = export_lines(wb, kind, upto, keep_pii=pii == "keep")
        return Response("".join(ln + "\n" for ln in lines), media_type="application/jsonl")

    @app.post("/v1/tunesmith/review/retrain")
    async def retrain(request: Request) -> dict:
        body: Retrain = await json_body(request, Retrain)
        return await asyncio.to_thread(_retrain, app, wb, body)


def _masked_item(item: dict[str, Any]) -> dict[str, Any]:
    """A review item as the page sees it: its row in the training format, PII masked."""
    build = sft_line if item["kind"] == "sft" else dpo_line
    return {**item, "row": build(item, keep_pii=False)}


async def _second_answer(app: FastAPI, messages: list[dict[str, Any]], body: Alternative) -> str:
    """One answer from ``body.model`` (an alias resolves) through the serving engine, as chat would."""
    from tunesmith.models.generate import GenerationSettings
    from tunesmith.serve.chat import resolve_model
    from tunesmith.serve.prompts import fit_prompt

    ref = await asyncio.to_thread(resolve_model, app, body.model)
    prompt, max_tokens = await asyncio.to_thread(
        fit_prompt, ref, messages, body.max_tokens, app.state.settings.max_context_tokens, body.max_tokens
    )
    settings = GenerationSettings(max_tokens=max_tokens, temperature=body.temperature, seed=0)
    fut = app.state.engine.submit(ref, messages, settings, prompt=prompt)
    gen = await asyncio.wrap_future(fut)
    return gen.text


def _retrain(app: FastAPI, wb: WorkbenchStore, body: Retrain) -> dict:
    from tunesmith.serve import jobs as jobs_mod
    from tunesmith.serve import wire
    from tunesmith.serve.app import _check_training_file, _new_job
    from tunesmith.serve.store import new_id

    store, settings = app.state.store, app.state.settings
    src = store.get_file(body.training_file)
    if src is None or src["purpose"] != "fine-tune" or src["status"] != "processed" or src["task"] != "chat":
        raise bad_request(
            f"invalid training_file: {body.training_file} (needs a processed fine-tune file of chat lines).",
            param="training_file",
        )
    version = wb.review_version()
    reviewed = export_lines(wb, "sft", version)
    if not reviewed:
        raise bad_request(
            "There are no reviewed answers yet; correct some logged answers first.", code="nothing_reviewed"
        )
    original = jobs_mod.file_path(settings.data_dir, body.training_file).read_bytes()
    fid = new_id("file-")
    path = jobs_mod.file_path(settings.data_dir, fid)
    data = original.rstrip(b"\n") + b"\n" + "".join(ln + "\n" for ln in reviewed).encode("utf-8")
    path.write_bytes(data)
    name = f"{Path(src['filename']).stem}+reviewed-v{version}.jsonl"
    status, details, task, n = _check_training_file(path, name)
    store.add_file(
        {
            "id": fid,
            "filename": name,
            "purpose": "fine-tune",
            "bytes": len(data),
            "created_at": int(time.time()),
            "status": status,
            "status_details": details,
            "task": task,
            "n_examples": n,
        }
    )
    hyper = {"n_epochs": body.n_epochs} if body.n_epochs else {}
    job = _new_job(
        store,
        settings,
        wire.JobCreate.model_validate(
            {
                "model": body.model,
                "training_file": fid,
                "suffix": body.suffix,
                "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
                "metadata": {
                    "workbench": "retrain",
                    "reviewed_upto": str(version),
                    "base_file": body.training_file,
                },
            }
        ),
    )
    return {
        "job": wire.job_obj(job),
        "training_file": fid,
        "reviewed_upto": version,
        "n_reviewed": len(reviewed),
    }
