"""The workbench in the browser (``/workbench``): Data, Train, Evaluate & gate, Promote, Review.

The pages (``static/workbench/``) are plain HTML + JS with no build step and no external assets; like the
dashboard, the shell holds no data and every action is an API call with the key typed into the page.
Those calls are the OpenAI-shaped API (files, fine-tuning jobs, chat) plus the extensions below and in
``serve.aliases`` and ``serve.review``; docs/workbench.md lists each with a ``curl`` line.

Routes here:

- ``GET /v1/tunesmith/files/{id}/check?model=M``: the ``tunesmith data check`` report of an uploaded file
  (errors with their lines, warnings, stats; token stats with ``M``'s tokenizer) and the trained-token view
  of its first three examples (``data show``: the text the model sees, with the spans that carry loss).
- ``GET /v1/tunesmith/plan?model=M&training_file=F[&n_epochs=..&batch_size=..]``: what a supervised job
  would run with: the training plan (schedule and memory plan, ``train.plan``) the Train page shows as
  defaults.
- ``POST /v1/tunesmith/evaluations`` ``{"job_id", "holdout_file", "baselines"?, "require"?, "against"?,
  "include_reviewed"?}``: evaluate a succeeded job's model (a background task); ``against`` names an alias
  (``prod``) to compare with instead of the prompted baselines; ``include_reviewed`` adds the reviewed rows
  the job was trained with (a retrain job's ``reviewed_upto``) to the hold-out.
- ``GET /v1/tunesmith/evaluations``, ``/{id}`` (status, report, gate), ``/{id}/report.html``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.serve.aliases import actor
from tunesmith.serve.errors import APIError, bad_request, not_found
from tunesmith.serve.wbstore import WorkbenchStore

STATIC = Path(__file__).parent / "static" / "workbench"
PAGES = {"/workbench": ("index.html", "text/html"), "/workbench/app.js": ("app.js", "text/javascript")}


class EvaluationCreate(BaseModel):
    """Body of ``POST /v1/tunesmith/evaluations``."""

    model_config = ConfigDict(extra="ignore", strict=True)
    job_id: str = Field(min_length=1, max_length=64)
    holdout_file: str = Field(min_length=1, max_length=64)
    baselines: list[str] = Field(default_factory=lambda: ["zero-shot", "few-shot"], max_length=3)
    require: list[str] = Field(default_factory=list, max_length=32)
    against: str | None = Field(None, max_length=64, description="An alias to compare with (e.g. prod).")
    include_reviewed: bool = False
    max_new_tokens: int = Field(32, ge=1, le=4096)


def add_routes(app: FastAPI) -> None:
    """Pages, data check, plan and evaluations; the alias and review routes too."""
    from tunesmith.serve import aliases, review
    from tunesmith.serve.wbtasks import TaskRunner

    settings = app.state.settings
    app.state.wb = WorkbenchStore(settings.data_dir / "tunesmith.db")
    app.state.wb_runner = TaskRunner(settings.data_dir)
    _page_routes(app)
    _data_routes(app)
    _eval_routes(app)
    aliases.add_routes(app)
    review.add_routes(app)


def _page_routes(app: FastAPI) -> None:
    def page(name: str, media: str) -> Any:
        def serve() -> Response:
            return Response((STATIC / name).read_text(encoding="utf-8"), media_type=media)

        return serve

    for path, (name, media) in PAGES.items():
        app.add_api_route(path, page(name, media), methods=["GET"], include_in_schema=False,
                          response_class=HTMLResponse if media == "text/html" else Response)  # fmt: skip


def _data_routes(app: FastAPI) -> None:
    from tunesmith.serve import jobs as jobs_mod

    store, settings = app.state.store, app.state.settings

    def _path(file_id: str) -> Path:
        row = store.get_file(file_id)
        if row is None:
            raise not_found(f"No such File object: {file_id}", param="id")
        return jobs_mod.file_path(settings.data_dir, file_id)

    @app.get("/v1/tunesmith/files/{file_id}/check")
    async def check(file_id: str, model: str = "smollm2-135m-instruct") -> dict:
        _model_ok(app, model)
        return await asyncio.to_thread(_check_report, _path(file_id), model)

    @app.get("/v1/tunesmith/plan")
    async def plan(
        training_file: str, model: str = "smollm2-135m-instruct", n_epochs: int | None = None,
        batch_size: int | None = None,
    ) -> dict:  # fmt: skip
        _model_ok(app, model)
        _path(training_file)
        job = {
            "id": "ftjob-plan", "model": model, "training_file": training_file, "validation_file": None,
            "seed": 0, "method": json.dumps({"type": "supervised"}),
            "hyperparameters": json.dumps({
                "n_epochs": n_epochs or "auto", "batch_size": batch_size or "auto",
                "learning_rate_multiplier": "auto",
            }),
        }  # fmt: skip
        return await asyncio.to_thread(_plan, job, settings)


def _model_ok(app: FastAPI, model: str) -> None:
    from tunesmith.serve.app import BASE_MODELS

    if model not in BASE_MODELS and model not in app.state.settings.extra_base_models:
        raise bad_request(f"Unknown base model {model!r}.", param="model", code="model_not_found")


def _check_report(path: Path, model: str) -> dict[str, Any]:
    """``data check`` + the trained-token view of three examples (see the module docstring)."""
    from tunesmith.data.check import validate_data
    from tunesmith.data.show import show_examples
    from tunesmith.errors import TunesmithError
    from tunesmith.models.load import load_tokenizer

    tok = load_tokenizer(model)
    report = validate_data(path, tokenizer=tok, model_name=model).as_dict()
    examples: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    if report["ok"]:
        try:
            shown = show_examples(path, tok, n=3)
        except TunesmithError as exc:
            findings = [{"code": "show_failed", "message": exc.message}]
        else:
            examples = [
                {"line": e.line, "text": e.text, "trained_spans": e.trained_spans, "n_tokens": e.n_tokens,
                 "n_trained": e.n_trained}
                for e in shown.examples
            ]  # fmt: skip
            findings = [f.as_dict() for f in shown.findings]
    return {
        "object": "data_check",
        "model": model,
        "report": report,
        "examples": examples,
        "findings": findings,
    }


def _plan(job: dict[str, Any], settings: Any) -> dict[str, Any]:
    from tunesmith.errors import TunesmithError
    from tunesmith.models.load import load_tokenizer
    from tunesmith.serve.jobs import JobInputError, job_config
    from tunesmith.train.data import prepare_data
    from tunesmith.train.plan import describe, make_plan

    try:
        cfg = job_config(job, settings.data_dir, list(settings.train_overrides))
        data = prepare_data(cfg, load_tokenizer(cfg.model.name))
        plan = make_plan(cfg, data.train)
    except JobInputError as exc:
        raise bad_request(exc.message, param="training_file", code=exc.code) from None
    except TunesmithError as exc:
        raise bad_request(exc.message + (f" {exc.hint}" if exc.hint else ""), param="training_file") from None
    return {
        "object": "plan",
        "finetune": cfg.train.finetune,
        "n_examples": len(data.train),
        **describe(plan.schedule, plan.memory),
    }


def _eval_routes(app: FastAPI) -> None:
    from tunesmith.serve import jobs as jobs_mod
    from tunesmith.serve.app import json_body
    from tunesmith.serve.wbtasks import model_location

    store, settings = app.state.store, app.state.settings
    wb: WorkbenchStore = app.state.wb

    @app.post("/v1/tunesmith/evaluations")
    async def create(request: Request) -> dict:
        body: EvaluationCreate = await json_body(request, EvaluationCreate)
        job = store.get_job(body.job_id)
        if job is None:
            raise not_found(f"No such fine-tuning job: {body.job_id}", param="job_id")
        if job["status"] != "succeeded":
            raise bad_request(
                f"Job {body.job_id} is {job['status']}; evaluate a succeeded job.", param="job_id"
            )
        hold = store.get_file(body.holdout_file)
        if hold is None or hold["status"] != "processed":
            raise bad_request(
                f"invalid holdout_file: {body.holdout_file} (no processed file).", param="holdout_file"
            )
        for b in body.baselines:
            if b not in ("zero-shot", "few-shot"):
                raise bad_request(
                    f"Unknown baseline {b!r}; use zero-shot and/or few-shot.", param="baselines"
                )
        _check_rules(body.require)
        against = None
        if body.against:
            alias = wb.alias(body.against)
            if alias is None:
                raise bad_request(f"No such alias: {body.against}.", param="against")
            loc = model_location(store, alias["model"])
            if loc is None:
                raise bad_request(
                    f"{body.against} points at {alias['model']}, which is not served.", param="against"
                )
            against = {"alias": body.against, "model": alias["model"], **loc}
        task = wb.add_task("eval", {}, actor(request))
        out = settings.data_dir / "evals" / task["id"]
        out.mkdir(parents=True, exist_ok=True)
        holdout = jobs_mod.file_path(settings.data_dir, body.holdout_file)
        n_reviewed = 0
        if body.include_reviewed:
            from tunesmith.serve.review import export_lines

            upto = json.loads(job["metadata"] or "{}").get("reviewed_upto")
            lines = export_lines(wb, "sft", int(upto) if upto else None)
            n_reviewed = len(lines)
            merged = out / "holdout.jsonl"
            merged.write_bytes(
                holdout.read_bytes().rstrip(b"\n") + b"\n" + "".join(x + "\n" for x in lines).encode()
            )
            holdout = merged
        params = {
            "job_id": job["id"], "model": job["fine_tuned_model"], "base": job["model"], "run_dir": job["run_dir"],
            "train": str(jobs_mod.file_path(settings.data_dir, job["training_file"])), "holdout": str(holdout),
            "holdout_file": body.holdout_file, "n_reviewed": n_reviewed, "baselines": body.baselines,
            "require": body.require, "against": against, "out": str(out), "max_new_tokens": body.max_new_tokens,
        }  # fmt: skip
        with wb.connect() as con:  # the id names the output folder, so the params are written after it
            con.execute("UPDATE wb_tasks SET params=? WHERE id=?", (json.dumps(params), task["id"]))
        app.state.wb_runner.kick()
        return wb.task(task["id"]) or task

    @app.get("/v1/tunesmith/evaluations")
    def list_evals(job_id: str | None = None) -> dict:
        rows = wb.tasks("eval", 200)
        if job_id:
            rows = [r for r in rows if r["params"].get("job_id") == job_id]
        return {"object": "list", "data": rows}

    @app.get("/v1/tunesmith/evaluations/{eval_id}")
    def get_eval(eval_id: str) -> dict:
        return _eval(wb, eval_id)

    @app.get("/v1/tunesmith/evaluations/{eval_id}/report.html")
    def report_html(eval_id: str) -> Response:
        task = _eval(wb, eval_id)
        f = Path(task["params"]["out"]) / "report.html"
        if task["status"] != "succeeded" or not f.exists():
            raise bad_request(f"Evaluation {eval_id} is {task['status']}; it has no report yet.", param="id")
        return Response(f.read_text(encoding="utf-8"), media_type="text/html")

    @app.get("/v1/tunesmith/tasks/{task_id}")
    def get_task(task_id: str) -> dict:
        task = wb.task(task_id)
        if task is None:
            raise not_found(f"No such task: {task_id}", param="id")
        return task


def _eval(wb: WorkbenchStore, eval_id: str) -> dict[str, Any]:
    task = wb.task(eval_id)
    if task is None or task["kind"] != "eval":
        raise not_found(f"No such evaluation: {eval_id}", param="id")
    return task


def _check_rules(rules: list[str]) -> None:
    from tunesmith.errors import TunesmithError
    from tunesmith.eval.gate import parse_rules

    try:
        parse_rules(rules)
    except TunesmithError as exc:
        raise APIError(400, exc.message + (f" {exc.hint}" if exc.hint else ""), param="require") from None
