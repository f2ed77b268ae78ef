"""``tunesmith eval``: every candidate on the same hold-out, scored the same way, in one report.

    load hold-out (+ training pool, + the run's config) -> system prompt -> candidates
    -> per candidate: batched greedy generation -> task metrics -> label scoring (classification)
       -> consistency on reworded inputs -> latency, tokens/s, cost -> reward score (chat, with a reward run)
    -> gate -> report.json + predictions.jsonl + report.html

Candidates: ``base:zero-shot``, ``base:few-shot``, ``base:rag`` (prompted base model) and ``finetuned``
(the adapter or full model of a run, with the zero-shot prompt it was trained on). Preference data is
dispatched to ``tunesmith.eval.preference.evaluate`` (base vs finetuned by log-probability margins).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunesmith.config import EvalConfig, Task
from tunesmith.data.formats import Columns, default_system_prompt, load_records_or_raise
from tunesmith.errors import TunesmithError
from tunesmith.eval import metrics as M
from tunesmith.eval.gate import evaluate_gate, parse_rules
from tunesmith.eval.prompts import (
    few_shot_messages,
    input_text,
    query_messages,
    reference,
    reword,
    select_shots,
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


@dataclass(frozen=True)
class EvalResult:
    report: dict[str, Any]
    out: Path | None

    @property
    def gate_passed(self) -> bool:
        return bool(self.report.get("gate", {}).get("passed", True))


@dataclass(frozen=True)
class EvalContext:
    """Everything the candidates share: the hold-out rows, the few-shot pool, the system prompt, the labels."""

    spec: EvalSpec
    task: Task
    rows: list[dict[str, Any]]
    pool: list[dict[str, Any]]
    system: str | None
    labels: list[str]
    run_cfg: dict[str, Any]


def run(
    spec: EvalSpec, *, models: dict[str, tuple[Any, Any]] | None = None, on_progress: Progress | None = None
) -> EvalResult:
    """Evaluate every candidate of ``spec``. ``models`` may hold already-loaded ``base`` / ``finetuned``
    ``(model, tokenizer)`` pairs."""
    started = time.perf_counter()
    notify = on_progress or (lambda event: None)
    if (spec.task or _peek_task(spec)) == "preference":
        parse_rules(spec.settings.require)
        return _preference(spec)
    ctx = prepare(spec)
    loaded = dict(models or {})
    results: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name in candidate_names(spec):
        notify({"event": "candidate", "name": name, "n": len(ctx.rows)})
        model, tok = _model_for(name, spec, loaded)
        results[name] = evaluate(ctx, name, model, tok)
    return finish(ctx, results, started)


def prepare(spec: EvalSpec) -> EvalContext:
    """Check the rules and baselines, load the data, decide the system prompt and label set."""
    parse_rules(spec.settings.require)  # a typo in a rule fails now, not after the evaluation
    _check_baselines(spec)
    holdout, pool, run_cfg = load_inputs(spec)
    task: Task = holdout.task  # type: ignore[assignment]
    rows = holdout.rows[: spec.settings.max_examples or None]
    system = spec.system_prompt or run_cfg.get("system_prompt") or default_system_prompt(pool or rows, task)
    labels = sorted({r["label"] for r in [*rows, *pool]}) if task == "classification" else []
    return EvalContext(spec, task, rows, pool, system, labels, run_cfg)


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


def evaluate(ctx: EvalContext, name: str, model: Any, tok: Any) -> tuple[dict[str, Any], list[str]]:
    """One candidate's report entry and answers."""
    t0 = time.perf_counter()
    convs = candidate_prompts(ctx, name)
    entry, answers = evaluate_candidate(
        model, tok, convs, _variants(ctx, name, convs), ctx.rows, ctx.task, ctx.labels, ctx.spec
    )
    entry["wall_s"] = round(time.perf_counter() - t0, 2)
    return entry, answers


def finish(
    ctx: EvalContext, results: dict[str, tuple[dict[str, Any], list[str]]], started: float | None = None
) -> EvalResult:
    """Gate, report.json, predictions.jsonl and report.html."""
    spec = ctx.spec
    candidates = {k: v[0] for k, v in results.items()}
    answers = {k: v[1] for k, v in results.items()}
    report = build_report(spec, ctx.task, ctx.rows, ctx.system, ctx.labels, candidates, answers, ctx.run_cfg)
    report["gate"] = evaluate_gate(spec.settings.require, report["candidates"])
    if started is not None:
        report["wall_time_s"] = round(time.perf_counter() - started, 2)
    if spec.out is not None:
        write_report(spec.out, report, ctx.rows, ctx.task, answers)
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


def _preference(spec: EvalSpec) -> EvalResult:
    if spec.adapter is None:
        raise TunesmithError(
            "Preference data is evaluated for a trained run.",
            "Pass --adapter RUN (a dpo, ppo, reward or sft run).",
        )
    from tunesmith.eval.preference import evaluate

    report = evaluate(
        model=spec.model,
        adapter=spec.adapter,
        data=spec.data,
        out=spec.out,
        max_examples=spec.settings.max_examples,
        reward_model=spec.reward_run,
    )
    report["gate"] = evaluate_gate(spec.settings.require, report.get("candidates", {}))
    if spec.out is not None:
        (Path(spec.out) / "report.json").write_text(
            json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
        )
    return EvalResult(report, spec.out)


# --------------------------------------------------------------------------- candidates


def candidate_prompts(ctx: EvalContext, name: str) -> list[list[dict]]:
    """The prompts (conversations) candidate ``name`` answers, in hold-out order."""
    task, rows, system = ctx.task, ctx.rows, ctx.system
    if name in ("base:zero-shot", "finetuned"):
        return [query_messages(r, task, system) for r in rows]
    if name == "base:few-shot":
        s = ctx.spec.settings
        shots = select_shots(rows, ctx.pool, task, s.few_shot_k, s.few_shot_selection, ctx.spec.seed)
        return [few_shot_messages(r, task, system, sh) for r, sh in zip(rows, shots, strict=True)]
    if name == "base:rag":
        return _rag_prompts(ctx.spec, rows, task, system)
    raise TunesmithError(f"Unknown candidate {name!r}.")


def _rag_prompts(spec: EvalSpec, rows: list[dict], task: Task, system: str | None) -> list[list[dict]]:
    from tunesmith.rag.answer import build_rag_messages
    from tunesmith.rag.retrieve import open_index, retrieve

    index = open_index(spec.rag_index)  # type: ignore[arg-type]
    out = []
    for r in rows:
        question = input_text(r, task)
        out.append(build_rag_messages(question, retrieve(index, question, k=3), system))
    return out


def _variants(ctx: EvalContext, name: str, convs: list[list[dict]]) -> list[list[dict]]:
    """Reworded prompts for the consistency probe: the candidate's own prompt (same shots, same passages)
    with the user's text replaced by a lightly reworded one."""
    n = min(ctx.spec.settings.consistency_examples, len(ctx.rows))
    out = []
    for i in range(n):
        old = input_text(ctx.rows[i], ctx.task)
        new = input_text(reword(ctx.rows[i], ctx.task, seed=ctx.spec.seed * 100_003 + i), ctx.task)
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
    task: Task,
    labels: list[str],
    spec: EvalSpec,
) -> tuple[dict[str, Any], list[str]]:
    """Generate, score and time one candidate; returns its report entry and its answers."""
    from tunesmith.models.generate import GenerationSettings, generate, score_labels

    s = spec.settings
    max_tokens = s.max_new_tokens
    if task == "classification":  # a label in a short sentence; more only costs time
        max_tokens = min(
            max_tokens, max(len(tok(lab, add_special_tokens=False)["input_ids"]) for lab in labels) + 16
        )
    settings = GenerationSettings(max_tokens=max_tokens)
    t0 = time.perf_counter()
    gens = generate(model, tok, convs, settings, batch_size=s.batch_size)
    wall = time.perf_counter() - t0
    timing = {"generation": wall}
    answers = [g.text for g in gens]
    refs = [reference(r, task) for r in rows]
    metrics, scored_by = task_metrics(task, rows, refs, answers, labels, s)
    if task == "classification":
        t1 = time.perf_counter()
        ls = score_labels(model, tok, convs, labels, batch_size=s.batch_size)
        timing["label_scoring"] = time.perf_counter() - t1
        lm = M.classification_metrics([r["label"] for r in rows], ls.predictions, labels)
        lm["ms_per_request"] = 1000 * ls.latency_s / max(1, len(rows))
        metrics["label_scoring"] = lm
        scored_by += "; label_scoring.*: the label with the highest log-likelihood as the whole answer (cannot be invalid)"
    if variants:
        t1 = time.perf_counter()
        v_answers = [g.text for g in generate(model, tok, variants, settings, batch_size=s.batch_size)]
        timing["consistency"] = time.perf_counter() - t1
        key = (lambda a: M.match_label(a, labels) or a) if task == "classification" else (lambda a: a)  # noqa: E731
        metrics["consistency"] = M.consistency(
            [key(a) for a in answers[: len(variants)]], [[key(v)] for v in v_answers]
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
    if spec.reward_run is not None and task in ("chat", "completion"):
        from tunesmith.models.scoring import load_reward_scorer

        scorer = load_reward_scorer(spec.reward_run)
        scores = scorer.score(
            [[*c, {"role": "assistant", "content": a}] for c, a in zip(convs, answers, strict=True)]
        )
        metrics["reward_score"] = sum(scores) / len(scores)
    entry = {
        "metrics": metrics,
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
        "latency_ms": M.latency_summary([g.latency_s for g in gens]),
        "scored_by": scored_by,
        "completion_tokens": [g.completion_tokens for g in gens],
    }
    if task == "classification":
        entry["label_scoring_predictions"] = ls.predictions
    return entry, answers


def task_metrics(
    task: Task, rows: list[dict], refs: list[str], answers: list[str], labels: list[str], s: EvalConfig
) -> tuple[dict[str, Any], str]:
    """The metrics for ``task`` and a sentence saying how they were scored."""
    if task == "classification":
        preds = [M.match_label(a, labels) for a in answers]
        how = "accuracy etc.: greedy answer matched to a label after normalising case, whitespace and surrounding punctuation (or the one label named in it)"
        return M.classification_metrics([r["label"] for r in rows], preds, labels), how
    if task == "extraction":
        how = "JSON object parsed from the greedy answer; fields compared after normalising (numbers numerically)"
        return M.extraction_metrics([r["fields"] for r in rows], answers), how
    rules = {"regex": s.format_regex, "schema": s.json_schema, "max_chars": s.max_answer_chars}
    how = "greedy answer vs reference: word-token F1 and ROUGE-L after normalising case, whitespace and punctuation"
    return M.generation_metrics(refs, answers, **rules), how


# --------------------------------------------------------------------------- report


def build_report(
    spec: EvalSpec,
    task: Task,
    rows: list[dict],
    system: str | None,
    labels: list[str],
    candidates: dict,
    answers: dict,
    run_cfg: dict,
) -> dict[str, Any]:
    """report.json: the issue's shape plus how things were scored, examples and the training curves."""
    few = f"few-shot: {spec.settings.few_shot_k} training examples per question, chosen by " + (
        "similarity (cosine of minilm embeddings; the most similar last)"
        if spec.settings.few_shot_selection == "similar"
        else f"random draw (seed {spec.seed})"
    )
    return {
        "task": task,
        "n": len(rows),
        "candidates": {
            k: {
                kk: vv for kk, vv in v.items() if kk not in ("completion_tokens", "label_scoring_predictions")
            }
            for k, v in candidates.items()
        },
        "labels": labels,
        "system_prompt": system,
        "scoring": {
            "decoding": "greedy, batched with left padding and a KV cache; latency = wall time of the request's batch "
            f"(batch size {spec.settings.batch_size})",
            "few_shot": few,
            "consistency": f"the first {spec.settings.consistency_examples} hold-out inputs re-asked with light rewording (greeting, sign-off, case, spacing); share answered the same",
            "cost": f"${spec.settings.price_per_1k_tokens}/1k tokens"
            if spec.settings.price_per_1k_tokens is not None
            else f"measured machine time x ${spec.settings.machine_usd_per_hour}/hour",
            **{k: v["scored_by"] for k, v in candidates.items()},
        },
        "model": spec.model,
        "adapter": str(spec.adapter) if spec.adapter else None,
        "data": str(spec.data),
        "examples": disagreements(rows, task, labels, candidates, answers),
        "lengths": {k: v["completion_tokens"] for k, v in candidates.items()},
        "training": training_curves(Path(run_cfg["run_dir"])) if run_cfg.get("run_dir") else {},
    }


def disagreements(
    rows: list[dict], task: Task, labels: list[str], candidates: dict, answers: dict, limit: int = 30
) -> list[dict[str, Any]]:
    """Hold-out examples where the candidates' answers differ (normalised), first ``limit``."""
    out = []
    for i, r in enumerate(rows):
        got = {name: answers[name][i] for name in candidates}
        keys = {
            M.normalize(str(M.match_label(a, labels)) if task == "classification" else a)
            for a in got.values()
        }
        if len(keys) <= 1:
            continue
        ref = reference(r, task)
        ok = {
            n: (M.match_label(a, labels) == r["label"])
            if task == "classification"
            else M.normalize(a) == M.normalize(ref)
            for n, a in got.items()
        }
        out.append(
            {"index": i, "input": input_text(r, task), "reference": ref, "answers": got, "correct": ok}
        )
        if len(out) >= limit:
            break
    return out


def training_curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """``{"loss": [[step, value]...], "val_loss": [...]}`` from a run's metrics.jsonl."""
    f = run_dir / "metrics.jsonl"
    curves: dict[str, list[list[float]]] = {}
    if not f.exists():
        return curves
    for line in f.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for key in ("loss", "val_loss"):
            if isinstance(row.get(key), int | float) and isinstance(row.get("step"), int | float):
                curves.setdefault(key, []).append([float(row["step"]), float(row[key])])
    return curves


def write_report(
    out: Path, report: dict[str, Any], rows: list[dict], task: Task, answers: dict[str, list[str]]
) -> None:
    from tunesmith.eval.html import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            fh.write(
                json.dumps(
                    {
                        "index": i,
                        "input": input_text(r, task),
                        "reference": reference(r, task),
                        **{k: v[i] for k, v in answers.items()},
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
