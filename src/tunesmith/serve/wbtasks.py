"""The workbench's background tasks: evaluating a job's model (against the prompted baselines, or against the
model an alias such as ``prod`` points at) and scoring the confidence of logged answers.

Design choices:
- **Never in the API process.** Like training jobs, a task loads models, so it runs in its own process
  (``python -m tunesmith.serve.wbtasks --data-dir D --task ID``), started by a ``TaskRunner`` thread in the
  server one task at a time (the machine's cores are shared with training). The process dies with the server
  (``PR_SET_PDEATHSIG``); a task left ``running`` by a stopped server is marked failed at the next start.
- **One evaluation engine.** An evaluation is ``tunesmith eval`` (``eval.run``): same prompts, metrics,
  gate and report.json. A comparison against an alias's model evaluates both fine-tuned models on the same
  rows with the same prompt (candidates ``finetuned`` and ``prod``), and its default rule is
  ``finetuned.<headline> >= prod.<headline>``: the new model must not be worse than what is live.
- **Confidence** of a logged answer is the geometric mean of its tokens' probabilities under the model that
  gave it (``exp`` of the mean token log-probability, ``models.scoring.answer_logps``): 1.0 is certain, low
  values are answers the model itself found unlikely. The model is the one the request named, or, for an
  alias, the model the alias pointed at when the request was logged (from the alias audit log).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tunesmith.serve.wbstore import WorkbenchStore

log = logging.getLogger("tunesmith.serve")


class TaskRunner:
    """Runs queued workbench tasks one at a time, each in its own process (started on first use)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.store = WorkbenchStore(self.data_dir / "tunesmith.db")
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.store.abandon_running_tasks()

    def kick(self) -> None:
        """Start the runner thread if needed and tell it a task is queued."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="tunesmith-wbtasks", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            queued = [t for t in self.store.tasks(limit=1000) if t["status"] == "queued"]
            if not queued:
                self._wake.wait(5)
                self._wake.clear()
                continue
            task = queued[-1]  # tasks() is newest first: run the oldest
            self.store.set_task_status(task["id"], "running")
            try:
                self._run(task["id"])
            except Exception:  # noqa: BLE001 - the runner must outlive one bad task
                log.exception("workbench task %s failed", task["id"])

    def _run(self, task_id: str) -> None:
        from tunesmith.serve.jobs import _die_with_parent

        cmd = [
            sys.executable,
            "-m",
            "tunesmith.serve.wbtasks",
            "--data-dir",
            str(self.data_dir),
            "--task",
            task_id,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_die_with_parent, check=False)
        task = self.store.task(task_id) or {}
        if task.get("status") == "running":  # the process died before recording an outcome
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            self.store.finish_task(
                task_id, "failed", error=f"The task process exited with {proc.returncode}: {' '.join(tail)}"
            )


# --------------------------------------------------------------------------- in the task's process


def run_task(data_dir: Path, task_id: str) -> None:
    """Run one task and record its result or its error (a TunesmithError's message and hint)."""
    from tunesmith.errors import TunesmithError

    store = WorkbenchStore(Path(data_dir) / "tunesmith.db")
    task = store.task(task_id)
    if task is None:
        return
    try:
        if task["kind"] == "eval":
            result = _evaluate(task["params"])
        elif task["kind"] == "score":
            result = _score(Path(data_dir), store, task["params"])
        else:
            raise TunesmithError(f"Unknown task kind {task['kind']!r}.")
    except TunesmithError as exc:
        store.finish_task(task_id, "failed", error=exc.message + (f" {exc.hint}" if exc.hint else ""))
        return
    except Exception as exc:  # noqa: BLE001 - recorded for the page; the traceback goes to the log
        log.exception("task %s", task_id)
        store.finish_task(task_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return
    store.finish_task(task_id, "succeeded", result=result)


def _evaluate(p: dict[str, Any]) -> dict[str, Any]:
    """``eval`` on the job's model: against the prompted baselines, or against ``p['against']`` (a model
    an alias points at). Without rules of the caller's, the gate is ``finetuned.<headline> > base:few-shot.<headline>``
    (``>= prod.<headline>`` for a comparison), the headline being the task's first metric."""
    from tunesmith.config import EvalConfig
    from tunesmith.eval import run as ev
    from tunesmith.eval.gate import evaluate_gate
    from tunesmith.models.inference import load_for_inference

    out, against = Path(p["out"]), p.get("against")
    settings = EvalConfig(
        require=list(p.get("require") or []),
        max_new_tokens=int(p.get("max_new_tokens") or 32),
        consistency_examples=0,
        few_shot_k=2,
    )
    spec = ev.EvalSpec(
        data=Path(p["holdout"]),
        out=out,
        model=p["base"],
        adapter=Path(p["run_dir"]),
        train=Path(p["train"]) if p.get("train") else None,
        baselines=() if against else tuple(p.get("baselines") or ()),
        settings=settings,
    )
    started = time.perf_counter()
    ctx = ev.prepare(spec)  # checks the rules before any model is loaded
    results = {}
    if ev.candidate_names(spec)[:-1]:
        base = load_for_inference(p["base"], None)
        for name in ev.candidate_names(spec)[:-1]:
            results[name] = ev.evaluate(ctx, name, *base)
        del base
    results["finetuned"] = ev.evaluate(ctx, "finetuned", *load_for_inference(p["base"], Path(p["run_dir"])))
    if against:
        model, tok = load_for_inference(
            against["base"], Path(against["run_dir"]) if against.get("run_dir") else None
        )
        convs = ev.candidate_prompts(ctx, "finetuned")  # the same prompt for both fine-tuned models
        results["prod"] = ev.evaluate_candidate(model, tok, convs, [], ctx.rows, ctx.task, ctx.spec)
    report = ev.build_report(ctx, results)
    head = report.headline[0] if report.headline else "accuracy"
    other = "prod" if against else ("base:few-shot" if "base:few-shot" in results else next(iter(results)))
    op = ">=" if against else ">"
    rules = settings.require or ([f"finetuned.{head}{op}{other}.{head}"] if other != "finetuned" else [])
    report = report.model_copy(
        update={
            "gate": evaluate_gate(rules, report.candidates),
            "wall_time_s": round(time.perf_counter() - started, 2),
        }
    )
    ev.write_report(out, report, ctx, results)
    return {
        "report": report.model_dump(mode="json"),
        "out": str(out),
        "rules": rules,
        "against": against["model"] if against else None,
    }


def _score(data_dir: Path, store: WorkbenchStore, p: dict[str, Any]) -> dict[str, Any]:
    """Confidence of every logged answer not scored yet (see the module docstring)."""
    from tunesmith.models.inference import load_for_inference
    from tunesmith.models.scoring import answer_logps
    from tunesmith.serve.store import Store

    core = Store(data_dir / "tunesmith.db")
    done = store.scores()
    todo = [
        r
        for r in core.request_logs()
        if r["response"] is not None and "confidence" not in done.get(r["id"], {})
    ]
    by_model: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    for row in todo:
        name = row["model"]
        resolved = store.alias_at(name, row["created_at"]) or name
        by_model.setdefault(resolved, []).append(row)
    scored = 0
    for name, rows in by_model.items():
        ref = model_location(core, name)
        if ref is None:
            skipped += len(rows)
            continue
        model, tok = load_for_inference(ref["base"], Path(ref["run_dir"]) if ref.get("run_dir") else None)
        convs = [json.loads(r["messages"]) + [{"role": "assistant", "content": r["response"]}] for r in rows]
        logps = answer_logps(model, tok, convs)
        for row, lp in zip(rows, logps, strict=True):
            n = max(1, len(tok(row["response"], add_special_tokens=False)["input_ids"]) + 1)  # + end of turn
            store.set_score(row["id"], "confidence", round(math.exp(lp / n), 4))
            scored += 1
    return {"scored": scored, "skipped": skipped}


def model_location(core: Any, name: str) -> dict[str, Any] | None:
    """``{"base", "run_dir"}`` of a served model id (a base model: no run_dir), or None if unknown."""
    from tunesmith.serve.app import BASE_MODELS

    if name in BASE_MODELS:
        return {"base": name, "run_dir": None}
    job = core.job_by_model(name)
    if job is None or job["status"] != "succeeded" or name in core.deleted_models():
        return None
    return {"base": job["model"], "run_dir": job["run_dir"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="tunesmith workbench task (started by `tunesmith serve`).")
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s wbtask %(process)d %(levelname)s %(message)s")
    run_task(args.data_dir, args.task)


if __name__ == "__main__":
    main()
