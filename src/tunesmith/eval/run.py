"""``tunesmith eval``: every candidate on the same hold-out, scored the same way, in one report.

    load hold-out (+ training pool, + the run's config) -> task object (from the data and its answers)
    -> system prompt -> candidates
    -> per candidate: batched greedy generation -> the task's metrics -> label scoring (label tasks)
       -> consistency on reworded inputs -> latency, tokens/s, cost -> reward score (free-text answers)
    -> gate -> report.json (``EvalReport``) + predictions.jsonl + report.html

Candidates: ``base:zero-shot``, ``base:few-shot``, ``base:rag`` (prompted base model) and ``finetuned``
(the adapter or full model of a run, with the zero-shot prompt it was trained on). What differs between
tasks (prompts, references, budget, metrics) is the task object's (``tunesmith.eval.tasks``); preference
data goes to ``PreferenceTask.run`` (base vs finetuned by log-probability margins).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunesmith.config import EvalConfig, Task
from tunesmith.data.formats import Columns, load_records_or_raise
from tunesmith.data.labels import LabelMatch
from tunesmith.errors import TunesmithError
from tunesmith.eval import metrics as M
from tunesmith.eval.gate import evaluate_gate, parse_rules
from tunesmith.eval.prompts import few_shot_messages, reword, select_shots
from tunesmith.eval.tasks import EvalTask, PreferenceTask, task_for
from tunesmith.eval.verdict import with_verdict
from tunesmith.results.eval import (
    Candidate,
    EvalReport,
    Example,
    Latency,
    TrainingEnd,
    write_eval_report,
)

BASELINES = ("zero-shot", "few-shot", "rag")
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate. ``settings`` is the config's ``eval`` section (baselines there are overridden by
    ``baselines`` here)."""

    data: Path
    out: Path | None = None
    model: str | None = None
    adapter: Path | None = None
    train: Path | None = None
    task: Task | None = None
    system_prompt: str | None = None
    baselines: tuple[str, ...] = ("zero-shot", "few-shot")
    settings: EvalConfig = field(default_factory=EvalConfig)
    rag_index: Path | str | None = None  # a folder or a postgresql:// URL
    reward_run: Path | None = None
    columns: Columns = Columns()
    seed: int = 0
    graders: tuple[Path, ...] = ()  # grader JSON files (eval --grader, eval.graders): eval/judged.py
    judge_url: str | None = None  # OpenAI-compatible endpoint for model judges without their own base_url


@dataclass(frozen=True)
class EvalResult:
    report: EvalReport
    out: Path | None

    @property
    def gate_passed(self) -> bool:
        return self.report.gate.passed


@dataclass(frozen=True)
class EvalContext:
    """Everything the candidates share: the task, the hold-out rows, the few-shot pool, the system prompt."""

    spec: EvalSpec
    task: EvalTask
    rows: list[dict[str, Any]]
    pool: list[dict[str, Any]]
    system: str | None
    run_cfg: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return self.task.labels


@dataclass(frozen=True)
class CandidateRun:
    """One candidate's report entry, its answers, their lengths (tokens) and (label tasks) how each matched."""

    candidate: Candidate
    answers: list[str]
    lengths: list[int]
    matches: list[LabelMatch] | None = None


def run(
    spec: EvalSpec, *, models: dict[str, tuple[Any, Any]] | None = None, on_progress: Progress | None = None
) -> EvalResult:
    """Evaluate every candidate of ``spec``. ``models`` may hold already-loaded ``base`` / ``finetuned``
    ``(model, tokenizer)`` pairs."""
    started = time.perf_counter()
    notify = on_progress or (lambda event: None)
    if (spec.task or _peek_task(spec)) == "preference":
        parse_rules(spec.settings.require)
        return EvalResult(PreferenceTask().run(spec), spec.out)
    ctx = prepare(spec)
    loaded = dict(models or {})
    results: dict[str, CandidateRun] = {}
    for name in candidate_names(spec):
        notify({"event": "candidate", "name": name, "n": len(ctx.rows)})
        model, tok = _model_for(name, spec, loaded)
        results[name] = evaluate(ctx, name, model, tok)
    return finish(ctx, results, started)


def prepare(spec: EvalSpec) -> EvalContext:
    """Check the rules and baselines, load the data, choose the task object (from the data and its reference
    answers) and the system prompt."""
    parse_rules(spec.settings.require)  # a typo in a rule fails now, not after the evaluation
    _check_baselines(spec)
    if spec.graders:  # a bad grader file fails now too
        from tunesmith.eval.judged import check_graders

        check_graders(spec.graders, spec.judge_url)
    holdout, pool, run_cfg = load_inputs(spec)
    rows = holdout.rows[: spec.settings.max_examples or None]
    task = task_for(holdout.task, rows, pool)
    if isinstance(task, PreferenceTask):
        raise TunesmithError(
            f"{spec.data} holds preference pairs, which are not answered by generation.",
            "Run `tunesmith eval --data PAIRS --adapter RUN` (it scores preference runs by log-probability).",
        )
    system = spec.system_prompt or run_cfg.get("system_prompt") or task.system_prompt(pool or rows)
    return EvalContext(spec, task, rows, pool, system, run_cfg)


def candidate_names(spec: EvalSpec) -> list[str]:
    names = [f"base:{b}" for b in BASELINES if b in spec.baselines]
    return [*names, "finetuned"] if spec.adapter is not None else names


def with_adapter(ctx: EvalContext, adapter: Path) -> EvalContext:
    """The same context for a run trained after it was prepared (the demo's baselines-first order)."""
    spec = replace(ctx.spec, adapter=Path(adapter))
    run_cfg = _run_config(spec.adapter)
    return replace(
        ctx,
        spec=spec,
        run_cfg=run_cfg,
        system=ctx.spec.system_prompt or run_cfg.get("system_prompt") or ctx.system,
    )


def evaluate(ctx: EvalContext, name: str, model: Any, tok: Any) -> CandidateRun:
    """One candidate: its report entry, answers and answer lengths."""
    t0 = time.perf_counter()
    convs = candidate_prompts(ctx, name)
    result = evaluate_candidate(
        model, tok, convs, _variants(ctx, name, convs), ctx.rows, ctx.task, ctx.spec, candidate_tools(ctx)
    )
    cand = result.candidate.model_copy(update={"wall_s": round(time.perf_counter() - t0, 2)})
    return replace(result, candidate=cand)


def finish(ctx: EvalContext, results: dict[str, CandidateRun], started: float | None = None) -> EvalResult:
    """Gate, report.json, predictions.jsonl and report.html."""
    spec = ctx.spec
    report = build_report(ctx, results)
    report = report.model_copy(
        update={
            "gate": evaluate_gate(spec.settings.require, report.candidates),
            "wall_time_s": round(time.perf_counter() - started, 2) if started is not None else None,
        }
    )
    if spec.graders:  # judged numbers, and the gate refusing a judge people do not agree with
        from tunesmith.eval.judged import add_graders, judge_gate

        items = [{**r, "input": ctx.task.input_text(r), "reference": ctx.task.reference(r)} for r in ctx.rows]
        report = add_graders(report, items, {k: v.answers for k, v in results.items()}, spec.graders, spec.judge_url)
        gate = evaluate_gate(spec.settings.require, report.candidates)
        gate = judge_gate(gate, report.graders, spec.settings.min_judge_agreement)
        report = report.model_copy(update={"gate": gate})
    report = with_verdict(report)  # after the gate: the verdict says what it decided
    if spec.out is not None:
        write_report(spec.out, report, ctx, results)
    return EvalResult(report, spec.out)


# --------------------------------------------------------------------------- inputs


def load_inputs(spec: EvalSpec) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """The hold-out, the few-shot pool (``--train`` or the run's ``data.train``) and facts from the run."""
    holdout = load_records_or_raise(spec.data, spec.task, spec.columns)
    if holdout.task == "text":
        raise TunesmithError(
            f"{spec.data} holds raw text; there is no reference answer to evaluate against.",
            "Evaluate on chat, completion, classification or extraction data.",
        )
    run_cfg = _run_config(spec.adapter)
    train_path = spec.train or run_cfg.get("train")
    pool: list[dict[str, Any]] = []
    if train_path is not None and Path(train_path).exists():
        pool = load_records_or_raise(train_path, holdout.task, spec.columns).rows
    return holdout, pool, run_cfg


def _run_config(adapter: Path | None) -> dict[str, Any]:
    if adapter is None:
        return {}
    import yaml

    for f in (Path(adapter) / "config.resolved.yaml", Path(adapter).parent / "config.resolved.yaml"):
        if f.exists():
            data = (yaml.safe_load(f.read_text()) or {}).get("data", {})
            return {
                "train": data.get("train"),
                "system_prompt": data.get("system_prompt"),
                "run_dir": str(f.parent),
            }
    return {}


def _peek_task(spec: EvalSpec) -> str | None:
    from tunesmith.data.formats import load_data

    return load_data(spec.data, None, spec.columns).task


def _check_baselines(spec: EvalSpec) -> None:
    for b in spec.baselines:
        if b not in BASELINES:
            raise TunesmithError(
                f"Unknown baseline {b!r}.", f"Use a comma-separated subset of {', '.join(BASELINES)}."
            )
    if "rag" in spec.baselines and spec.rag_index is None:
        raise TunesmithError(
            "The rag baseline needs an index.",
            "Pass --rag-index DIR (built with `tunesmith rag index`), or drop rag from --baselines.",
        )
    if not spec.baselines and spec.adapter is None:
        raise TunesmithError(
            "Nothing to evaluate: no baselines and no --adapter.",
            "Pass --baselines zero-shot or --adapter RUN.",
        )


# --------------------------------------------------------------------------- candidates


def candidate_prompts(ctx: EvalContext, name: str) -> list[list[dict]]:
    """The prompts (conversations) candidate ``name`` answers, in hold-out order."""
    task, rows, system = ctx.task, ctx.rows, ctx.system
    if name in ("base:zero-shot", "finetuned"):
        return [task.query(r, system) for r in rows]
    if name == "base:few-shot":
        s = ctx.spec.settings
        shots = select_shots(rows, ctx.pool, task, s.few_shot_k, s.few_shot_selection, ctx.spec.seed)
        return [few_shot_messages(r, task, system, sh) for r, sh in zip(rows, shots, strict=True)]
    if name == "base:rag":
        return _rag_prompts(ctx.spec, rows, task, system)
    raise TunesmithError(f"Unknown candidate {name!r}.")


def candidate_tools(ctx: EvalContext) -> list[Any]:
    """The tool list rendered into each prompt, in hold-out order: the row's own ``tools`` (None for a row
    without), the same for every candidate (few-shot examples are shown under the question's tools)."""
    return [r.get("tools") or None for r in ctx.rows]


def _rag_prompts(spec: EvalSpec, rows: list[dict], task: EvalTask, system: str | None) -> list[list[dict]]:
    from tunesmith.rag.answer import build_rag_messages
    from tunesmith.rag.retrieve import open_index, retrieve

    index = open_index(spec.rag_index)  # type: ignore[arg-type]
    out = []
    for r in rows:
        question = task.input_text(r)
        out.append(build_rag_messages(question, retrieve(index, question, k=3), system))
    return out


def _variants(ctx: EvalContext, name: str, convs: list[list[dict]]) -> list[list[dict]]:
    """Reworded prompts for the consistency probe: the candidate's own prompt (same shots, same passages)
    with the user's text replaced by a lightly reworded one."""
    n = min(ctx.spec.settings.consistency_examples, len(ctx.rows))
    out = []
    for i in range(n):
        old = ctx.task.input_text(ctx.rows[i])
        new = ctx.task.input_text(reword(ctx.rows[i], ctx.task, seed=ctx.spec.seed * 100_003 + i))
        last = convs[i][-1]
        content = last["content"].replace(old, new) if name == "base:rag" else new
        out.append([*convs[i][:-1], {**last, "content": content}])
    return out


def _model_for(name: str, spec: EvalSpec, loaded: dict[str, tuple[Any, Any]]) -> tuple[Any, Any]:
    from tunesmith.models.inference import load_for_inference, run_base_model

    key = "finetuned" if name == "finetuned" else "base"
    if key not in loaded:
        if key == "finetuned":
            loaded[key] = load_for_inference(spec.model, spec.adapter)
        else:
            base = (
                spec.model
                or (run_base_model(spec.adapter) if spec.adapter else None)
                or "smollm2-135m-instruct"
            )
            loaded[key] = load_for_inference(base, None)
    return loaded[key]


def evaluate_candidate(
    model: Any,
    tok: Any,
    convs: list[list[dict]],
    variants: list[list[dict]],
    rows: list[dict],
    task: EvalTask,
    spec: EvalSpec,
    tools: list[Any] | None = None,
) -> CandidateRun:
    """Generate, score and time one candidate. ``tools``: the tool list of each prompt (default: each
    row's own ``tools``, rendered by the chat template as training renders them)."""
    from tunesmith.models.generate import GenerationSettings, generate, score_labels

    s = spec.settings
    tools = tools if tools is not None else [r.get("tools") or None for r in rows]
    settings = GenerationSettings(max_tokens=task.max_tokens(tok, s.max_new_tokens))
    t0 = time.perf_counter()
    gens = generate(model, tok, convs, settings, batch_size=s.batch_size, tools_per_conversation=tools)
    wall = time.perf_counter() - t0
    timing = {"generation": wall}
    answers = [g.text for g in gens]
    scored = task.score(rows, answers, s)
    metrics, scored_by = dict(scored.metrics), scored.how
    if task.labels:
        t1 = time.perf_counter()
        ls = score_labels(
            model, tok, convs, task.labels, batch_size=s.batch_size, tools_per_conversation=tools
        )
        timing["label_scoring"] = time.perf_counter() - t1
        lm = M.classification_metrics(task.golds(rows), ls.predictions, task.labels)
        lm["ms_per_request"] = 1000 * ls.latency_s / max(1, len(rows))
        metrics["label_scoring"] = lm
        scored_by += "; label_scoring.*: the label with the highest log-likelihood as the whole answer (cannot be invalid)"
    if variants:
        t1 = time.perf_counter()
        v_gens = generate(
            model,
            tok,
            variants,
            settings,
            batch_size=s.batch_size,
            tools_per_conversation=tools[: len(variants)],
        )
        v_answers = [g.text for g in v_gens]
        timing["consistency"] = time.perf_counter() - t1
        metrics["consistency"] = M.consistency(
            [task.answer_key(a) for a in answers[: len(variants)]], [[task.answer_key(v)] for v in v_answers]
        )
        metrics["consistency_n"] = len(variants)
    n_prompt = sum(g.prompt_tokens for g in gens)
    n_completion = sum(g.completion_tokens for g in gens)
    metrics["tokens_per_s"] = n_completion / wall if wall > 0 else 0.0
    metrics["cost_per_1k_requests_usd"] = M.cost_per_1k_requests(
        wall / len(rows), (n_prompt + n_completion) / len(rows), s.machine_usd_per_hour, s.price_per_1k_tokens
    )
    metrics["mean_completion_tokens"] = n_completion / len(rows)
    metrics["mean_prompt_tokens"] = n_prompt / len(rows)
    metrics["max_new_tokens"] = settings.max_tokens
    if spec.reward_run is not None and task.free_text:
        from tunesmith.models.scoring import load_reward_scorer

        scorer = load_reward_scorer(spec.reward_run)
        scores = scorer.score(
            [[*c, {"role": "assistant", "content": a}] for c, a in zip(convs, answers, strict=True)]
        )
        metrics["reward_score"] = sum(scores) / len(scores)
    cand = Candidate(
        metrics=metrics,
        latency_ms=Latency(**M.latency_summary([g.latency_s for g in gens])),
        timing_s={k: round(v, 2) for k, v in timing.items()},
        scored_by=scored_by,
        matches=M.match_counts(scored.matches) if scored.matches is not None else None,
    )
    return CandidateRun(cand, answers, [g.completion_tokens for g in gens], scored.matches)


def score_answers(ctx: EvalContext, answers: list[str]) -> tuple[dict[str, Any], str, dict[str, int] | None]:
    """The task's metrics of ``answers`` to the hold-out (for answers generated elsewhere, e.g. a remote
    API): ``(metrics, how they were scored, match counts or None)``."""
    scored = ctx.task.score(ctx.rows, answers, ctx.spec.settings)
    counts = M.match_counts(scored.matches) if scored.matches is not None else None
    return dict(scored.metrics), scored.how, counts


# --------------------------------------------------------------------------- report


def build_report(ctx: EvalContext, results: dict[str, CandidateRun]) -> EvalReport:
    """The report (without the gate): candidates, how things were scored, which metrics apply and why,
    examples where the candidates disagree, answer lengths and the training curves."""
    spec, task = ctx.spec, ctx.task
    few = f"few-shot: {spec.settings.few_shot_k} training examples per question, chosen by " + (
        "similarity (cosine of minilm embeddings; the most similar last)"
        if spec.settings.few_shot_selection == "similar"
        else f"random draw (seed {spec.seed})"
    )
    scoring = {
        "decoding": "greedy, batched with left padding and a KV cache; latency = wall time of the request's batch "
        f"(batch size {spec.settings.batch_size})",
        "metrics": task.applied.reason,
        "few_shot": few,
        "consistency": f"the first {spec.settings.consistency_examples} hold-out inputs re-asked with light rewording (greeting, sign-off, case, spacing); share answered the same",
        "cost": f"${spec.settings.price_per_1k_tokens}/1k tokens"
        if spec.settings.price_per_1k_tokens is not None
        else f"measured machine time x ${spec.settings.machine_usd_per_hour}/hour",
        **{k: v.candidate.scored_by for k, v in results.items()},
    }
    return EvalReport(
        task=task.name,
        n=len(ctx.rows),
        candidates={k: v.candidate for k, v in results.items()},
        applied=task.applied,
        headline=list(task.headline),
        labels=list(task.labels),
        system_prompt=ctx.system,
        scoring=scoring,
        model=spec.model,
        adapter=str(spec.adapter) if spec.adapter else None,
        data=str(spec.data),
        examples=disagreements(ctx, results),
        lengths={k: v.lengths for k, v in results.items()},
        training=training_curves(Path(ctx.run_cfg["run_dir"])) if ctx.run_cfg.get("run_dir") else {},
        training_end=training_end(Path(ctx.run_cfg["run_dir"])) if ctx.run_cfg.get("run_dir") else None,
    )


def disagreements(ctx: EvalContext, results: dict[str, CandidateRun], limit: int = 30) -> list[Example]:
    """Hold-out examples where the candidates' answers differ (by the task's answer key), first ``limit``."""
    task, out = ctx.task, []
    for i, r in enumerate(ctx.rows):
        got = {name: res.answers[i] for name, res in results.items()}
        if len({task.answer_key(a) for a in got.values()}) <= 1:
            continue
        matched = {n: res.matches[i].how for n, res in results.items() if res.matches is not None}
        out.append(
            Example(
                index=i,
                input=task.input_text(r),
                reference=task.reference(r),
                answers=got,
                correct={n: task.correct(r, a) for n, a in got.items()},
                matched=matched,
            )
        )
        if len(out) >= limit:
            break
    return out


def training_curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """``{"loss": [[step, value]...], "val_loss": [...]}`` from a run's metrics.jsonl, by step (a step logged
    twice, as a resumed run does for the steps after its checkpoint, keeps its last value)."""
    f = run_dir / "metrics.jsonl"
    by_key: dict[str, dict[float, float]] = {}
    if not f.exists():
        return {}
    for line in f.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        for key in ("loss", "val_loss"):
            if isinstance(row.get(key), int | float) and isinstance(row.get("step"), int | float):
                by_key.setdefault(key, {})[float(row["step"])] = float(row[key])
    return {k: [[s, v] for s, v in sorted(pts.items())] for k, pts in by_key.items()}


def training_end(run_dir: Path) -> TrainingEnd | None:
    """How the run in ``run_dir`` ended (status, steps done of planned, best step, weights saved), from its
    summary.json; None when it has none that can be read."""
    from tunesmith.results.run import read_run_summary

    try:
        s = read_run_summary(run_dir)
    except TunesmithError:
        return None
    weights = getattr(s.extras, "weights", None)
    return TrainingEnd(status=s.status, steps=s.steps or 0, total_steps=s.total_steps, best_step=s.best_step,
                       weights=weights if isinstance(weights, str) else None)  # fmt: skip


def write_report(out: Path, report: EvalReport, ctx: EvalContext, results: dict[str, CandidateRun]) -> None:
    """report.json, predictions.jsonl (every answer, and for label tasks how it matched) and report.html."""
    from tunesmith.eval.html import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_eval_report(out / "report.json", report)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i, r in enumerate(ctx.rows):
            row: dict[str, Any] = {
                "index": i,
                "input": ctx.task.input_text(r),
                "reference": ctx.task.reference(r),
                **{k: v.answers[i] for k, v in results.items()},
            }
            if any(v.matches is not None for v in results.values()):
                row["match"] = {k: v.matches[i].how for k, v in results.items() if v.matches is not None}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
