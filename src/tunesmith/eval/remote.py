"""``tunesmith eval``'s prompts and metrics on the hold-out, answered by a model behind an OpenAI-compatible
API (a remotely fine-tuned model, whose weights cannot be loaded locally).

Design choices:
- Prompts are ``tunesmith eval``'s own (``candidate_prompts``) and so are the metrics (the task object's,
  ``score_answers``);
  answers are the remote model's chat completions, greedy (``temperature=0``).
- The report is an ``EvalReport`` with the one candidate ``finetuned``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.results.eval import Applied, EvalReport


def evaluate_remote(
    cfg: ProjectConfig, client: Any, model: str, system: str | None, out: Path | None
) -> EvalReport:
    """``tunesmith eval``'s prompts and metrics on the hold-out, answered by the remote model."""
    from tunesmith.eval import metrics as M
    from tunesmith.eval.run import EvalSpec, candidate_prompts, candidate_tools, prepare, score_answers
    from tunesmith.eval.tasks.toolcalls import calls_as_text
    from tunesmith.eval.verdict import with_verdict
    from tunesmith.results.eval import Candidate, Latency, write_eval_report

    spec = EvalSpec(
        data=Path(cfg.data.holdout),
        train=cfg.data.train,
        task=cfg.data.task,
        system_prompt=system,
        baselines=("zero-shot",),
        settings=cfg.eval,
        seed=cfg.data.seed,
    )  # prepare() wants a candidate
    ctx = prepare(spec)
    answers, latencies, tokens = [], [], []
    for conv, tools in zip(candidate_prompts(ctx, "finetuned"), candidate_tools(ctx), strict=True):
        t0 = time.perf_counter()
        r = client.chat.completions.create(
            model=model,
            messages=conv,
            temperature=0,
            max_tokens=cfg.eval.max_new_tokens,
            **({"tools": tools} if tools else {}),  # the row's tools, as training rendered them
        )
        latencies.append(time.perf_counter() - t0)
        msg = r.choices[0].message
        # calls the API parsed are scored like calls a local model writes
        answers.append((msg.content or "") + calls_as_text(msg.tool_calls or []))
        tokens.append(r.usage.completion_tokens if r.usage else 0)
    metrics, how, matches = score_answers(ctx, answers)
    report = EvalReport(
        task=ctx.task.name,
        n=len(ctx.rows),
        model=model,
        applied=_without_label_scoring(ctx.task.applied),
        headline=list(ctx.task.headline),
        labels=list(ctx.task.labels),
        candidates={
            "finetuned": Candidate(
                metrics=metrics,
                latency_ms=Latency(**M.latency_summary(latencies)),
                scored_by=how + " (answers from the remote API)",
                matches=matches,
            )
        },
        lengths={"finetuned": tokens},
    )
    report = with_verdict(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_eval_report(out / "report.json", report)
        with (out / "predictions.jsonl").open("w") as fh:
            for row, ans in zip(ctx.rows, answers, strict=True):
                fh.write(json.dumps({"input": row, "finetuned": ans}) + "\n")
    return report


def _without_label_scoring(applied: Applied) -> Applied:
    """The task's metric families minus label scoring, which needs the model's log-likelihoods."""
    if "label_scoring" not in applied.families:
        return applied
    return Applied(
        families=[f for f in applied.families if f != "label_scoring"],
        reason=applied.reason + " (no label scoring here: the remote API returns no log-likelihoods)",
    )
