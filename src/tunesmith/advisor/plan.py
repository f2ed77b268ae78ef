"""`tunesmith plan`: should this project prompt, retrieve, fine-tune, or fine-tune and retrieve?

    inspect the data (size, task, label balance, answer novelty, document coverage, answer regularity)
    -> measure prompted baselines on a hold-out sample (zero-shot, few-shot, RAG when documents are set)
    -> decide (rules below) -> expected cost and time -> the data still needed

The decision rules, in order (every reason printed names the measured number behind it):

1. **Knowledge.** When answers carry words absent from their inputs (novelty >= 0.4) and the configured
   documents contain most of those words (coverage >= 0.6), the answers depend on facts a model must look
   up: recommend RAG, or fine-tune + RAG when the answers also follow a regular format. Fine-tuning alone
   is a poor way to add facts (it memorises the training questions, not the documents). Novel answers
   without documents: recommend RAG and say which documents to add.
2. **Prompting is enough** when the best measured prompted baseline reaches the target (``eval.require``
   rule on the primary metric when given; else 0.9 accuracy / field F1, 0.7 token F1).
3. Otherwise **fine-tune**: the measured gap is what training must close, and classification, extraction
   and templated answers (fixed format and style) are what fine-tuning teaches best.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError

NOVELTY_KNOWLEDGE = 0.4
COVERAGE_KNOWLEDGE = 0.6
DEFAULT_TARGET = {"classification": 0.9, "extraction": 0.9}  # other tasks: token F1
GENERATION_TARGET = 0.7
_STOP = frozenset(
    str.split(
        "the a an and or of to in on for with is are was were be been it this that these those at by from as "
        "your you our we they their its can will would should could has have had not no yes do does did "
        "please thanks thank hello hi what which who when where why how"
    )
)


@dataclass(frozen=True)
class Profile:
    """What the data says before any model runs."""

    task: str
    n_train: int
    n_holdout: int
    label_counts: dict[str, int]
    imbalance: float | None  # largest label count / smallest
    novelty: float | None  # share of answer content words not in the input
    doc_coverage: float | None  # share of those novel words found in the documents
    regular_format: bool
    format_reason: str
    avg_answer_words: float


@dataclass(frozen=True)
class Baseline:
    name: str
    metric: str
    value: float
    ms_per_request: float
    wall_s: float


@dataclass(frozen=True)
class Plan:
    recommendation: str  # prompt | rag | fine-tune | fine-tune + rag
    reasons: list[str]
    profile: Profile
    baselines: list[Baseline]
    target: float
    metric: str
    cost: dict[str, Any]
    data_needed: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        import dataclasses

        return {
            "recommendation": self.recommendation,
            "reasons": self.reasons,
            "profile": dataclasses.asdict(self.profile),
            "baselines": {
                b.name: {
                    "metric": b.metric,
                    "value": b.value,
                    "ms_per_request": b.ms_per_request,
                    "wall_s": b.wall_s,
                }
                for b in self.baselines
            },
            "target": {"metric": self.metric, "value": self.target},
            "cost": self.cost,
            "data_needed": self.data_needed,
            "notes": self.notes,
        }

    def render_text(self) -> str:
        p = self.profile
        lines = [f"Recommendation: {self.recommendation.upper()}", ""]
        lines += [f"  - {r}" for r in self.reasons]
        lines += [
            "",
            f"Data: {p.task}, {p.n_train:,} training and {p.n_holdout:,} hold-out examples"
            + (f"; labels {dict(p.label_counts)} (imbalance {p.imbalance:.1f}x)" if p.label_counts else ""),
        ]
        if p.novelty is not None:
            cov = (
                f", {p.doc_coverage:.0%} of those found in the documents"
                if p.doc_coverage is not None
                else ""
            )
            lines.append(
                f"Answers: {p.novelty:.0%} of answer words absent from the input{cov}; format: {p.format_reason}"
            )
        lines.append(
            f"Baselines measured on {self._n_sample()} hold-out examples ({self.metric}, target {self.target:g}):"
        )
        for b in self.baselines:
            lines.append(
                f"  {b.name:<16} {b.value:.3f}   {b.ms_per_request:,.0f} ms/request   ({b.wall_s:.1f} s)"
            )
        lines.append("Expected cost and time:")
        lines += [f"  {k.removesuffix('_text')}: {v}" for k, v in self.cost.items() if k.endswith("_text")]
        lines.append(f"Data still needed: {self.data_needed}")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _n_sample(self) -> int:
        return int(self.cost.get("baseline_sample", 0))


# --------------------------------------------------------------------------- the task


def run(cfg: ProjectConfig, sample: int = 20) -> Plan:
    """Inspect, measure, decide, cost. ``sample`` hold-out examples are used for each baseline."""
    train_rows, hold_rows, task = load_split(cfg)
    docs_text = read_documents(cfg)
    profile = inspect_data(train_rows, hold_rows, task, docs_text)
    metric, target = primary_metric(task, cfg)
    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-") as tmp:
        baselines, rag_index_s = measure_baselines(
            cfg, train_rows, hold_rows[:sample], task, metric, Path(tmp)
        )
    recommendation, reasons = decide(profile, baselines, metric, target, has_docs=bool(cfg.rag.docs))
    cost = expected_cost(cfg, recommendation, baselines, rag_index_s)
    cost["baseline_sample"] = min(sample, len(hold_rows))
    return Plan(
        recommendation,
        reasons,
        profile,
        baselines,
        target,
        metric,
        cost,
        data_needed(recommendation, profile),
        notes=_notes(profile),
    )


def load_split(cfg: ProjectConfig) -> tuple[list[dict], list[dict], str]:
    """Training rows and hold-out rows (the configured hold-out, or the seeded split training would make)."""
    from tunesmith.data.formats import Columns, load_records_or_raise
    from tunesmith.data.split import holdout_split

    d = cfg.data
    if d.train is None:
        raise TunesmithError(
            "The config has no data.train to plan for.", "Set data.train: path/to/train.jsonl."
        )
    cols = Columns(d.text_field, d.label_field, d.fields_field)
    train = load_records_or_raise(d.train, d.task, cols)
    if train.task in ("preference", "text"):
        raise TunesmithError(
            f"{d.train} holds {train.task} data; plan compares prompted and fine-tuned answers.",
            "Plan with supervised data (chat, completion, classification or extraction).",
        )
    rows = train.rows
    if d.holdout is not None:
        hold = load_records_or_raise(d.holdout, train.task, cols).rows
    else:  # the split training makes (data.split.holdout_split), so plan judges the same hold-out
        train_idx, hold_idx = holdout_split(train, d.holdout_fraction, d.seed, at_least_one=True)
        rows, hold = [rows[i] for i in train_idx], [rows[i] for i in hold_idx]
    if not hold:
        raise TunesmithError(
            f"{d.train} is too small to hold any example out.", "Add examples or set data.holdout."
        )
    return rows, hold, str(train.task)


def read_documents(cfg: ProjectConfig) -> str:
    """All text of the configured documents (for the coverage signal), lower-cased."""
    from tunesmith.rag.loaders import LoadedDocument, iter_document_files, load_document

    parts: list[str] = []
    for f, source in iter_document_files([Path(p) for p in cfg.rag.docs]):
        doc = load_document(f, f.read_bytes(), source)
        if isinstance(doc, LoadedDocument):  # unreadable files are reported by the index step
            parts += [s.text for s in doc.sections]
    return "\n".join(parts).lower()


# --------------------------------------------------------------------------- signals


def inspect_data(train: list[dict], hold: list[dict], task: str, docs_text: str) -> Profile:
    from tunesmith.data.formats import to_chat

    labels = Counter(r["label"] for r in train) if task == "classification" else Counter()
    imbalance = (max(labels.values()) / min(labels.values())) if labels else None
    novel_share, covered, answers = [], [], []
    doc_words = set(_words(docs_text)) if docs_text else set()
    for r in train:
        msgs = to_chat(r, task)  # type: ignore[arg-type]
        answer = msgs[-1]["content"]
        answers.append(answer)
        if task in ("classification", "extraction"):
            continue
        inp = set(_words(" ".join(m["content"] for m in msgs[:-1])))
        words = [w for w in _words(answer) if w not in _STOP]
        if not words:
            continue
        novel = [w for w in words if w not in inp]
        novel_share.append(len(novel) / len(words))
        if doc_words and novel:
            covered.append(sum(w in doc_words for w in novel) / len(novel))
    regular, why = _regularity(task, answers)
    return Profile(
        task=task,
        n_train=len(train),
        n_holdout=len(hold),
        label_counts=dict(sorted(labels.items())),
        imbalance=imbalance,
        novelty=_mean(novel_share),
        doc_coverage=_mean(covered) if doc_words else None,
        regular_format=regular,
        format_reason=why,
        avg_answer_words=_mean([len(a.split()) for a in answers]) or 0.0,
    )


def _regularity(task: str, answers: list[str]) -> tuple[bool, str]:
    if task == "classification":
        return True, "one label from a fixed set"
    if task == "extraction":
        return True, "a JSON object with fixed keys"
    if not answers:
        return False, "no answers"
    json_share = sum(a.strip().startswith(("{", "[")) for a in answers) / len(answers)
    if json_share >= 0.8:
        return True, f"{json_share:.0%} of answers are JSON"
    starts = Counter(" ".join(a.split()[:2]).lower() for a in answers)
    top, n = starts.most_common(1)[0]
    if n / len(answers) >= 0.3 and len(answers) >= 5:
        return True, f"{n / len(answers):.0%} of answers open the same way ({top!r})"
    return False, "free-form answers"


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9][a-z0-9\-']*", text.lower()) if len(w) >= 3 or w.isdigit()]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def primary_metric(task: str, cfg: ProjectConfig) -> tuple[str, float]:
    """The metric the decision compares, and the target (from an eval.require rule on it when present)."""
    metric = {"classification": "accuracy", "extraction": "field_f1"}.get(task, "token_f1")
    target = DEFAULT_TARGET.get(task, GENERATION_TARGET)
    for rule in cfg.eval.require:
        m = re.match(r"\s*[\w:\-]+\.([\w.]+)\s*>=?\s*([0-9.]+)\s*$", rule)
        if m and m.group(1) == metric:
            target = float(m.group(2))
    return metric, target


# --------------------------------------------------------------------------- measured baselines


def measure_baselines(
    cfg: ProjectConfig, train: list[dict], sample: list[dict], task: str, metric: str, tmp: Path
) -> tuple[list[Baseline], float | None]:
    """Zero-shot, few-shot and (with documents) RAG on the hold-out sample, through the evaluation runner."""
    import json

    from tunesmith.eval.run import EvalSpec
    from tunesmith.eval.run import run as run_eval
    from tunesmith.models.inference import load_for_inference

    hold_f, train_f = tmp / "holdout.jsonl", tmp / "train.jsonl"
    for path, rows in ((hold_f, sample), (train_f, train)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    baselines = ["zero-shot", "few-shot"]
    index_dir, index_s = None, None
    if cfg.rag.docs:
        index_dir, index_s = _ensure_index(cfg, tmp / "index")
        baselines.append("rag")
    settings = cfg.eval.model_copy(update={"consistency_examples": 0, "max_examples": len(sample)})
    spec = EvalSpec(
        data=hold_f,
        model=cfg.model.name,
        train=train_f,
        task=task,  # type: ignore[arg-type]
        system_prompt=cfg.data.system_prompt,
        baselines=tuple(baselines),
        settings=settings,
        rag_index=index_dir,
        seed=cfg.data.seed,
    )
    models = {"base": load_for_inference(cfg.model.name, None)}
    report = run_eval(spec, models=models).report
    out = []
    for name in baselines:
        cand = report.candidates[f"base:{name}"]
        value = cand.metric(metric) or 0.0
        scored = cand.metric("label_scoring.accuracy")
        if metric == "accuracy" and scored is not None:  # fair to the prompt: its better scoring
            value = max(value, scored)
        out.append(Baseline(name, metric, value, cand.metric("latency_ms.mean") or 0.0, cand.wall_s or 0.0))
    return out, index_s


def _ensure_index(cfg: ProjectConfig, fallback: Path) -> tuple[Path, float]:
    from tunesmith.rag.index import index_documents

    target = Path(cfg.rag.index) if cfg.rag.index is not None else fallback
    start = time.perf_counter()
    index_documents(
        [Path(p) for p in cfg.rag.docs],
        target,
        chunk_tokens=cfg.rag.chunk_tokens,
        chunk_overlap=cfg.rag.chunk_overlap,
    )
    return target, time.perf_counter() - start


# --------------------------------------------------------------------------- decision


def decide(
    p: Profile, baselines: list[Baseline], metric: str, target: float, has_docs: bool
) -> tuple[str, list[str]]:
    by = {b.name: b for b in baselines}
    prompted = max((b for b in baselines if b.name != "rag"), key=lambda b: b.value)
    reasons: list[str] = []
    knowledge = p.novelty is not None and p.novelty >= NOVELTY_KNOWLEDGE
    if knowledge and has_docs and (p.doc_coverage or 0.0) >= COVERAGE_KNOWLEDGE:
        rag = by.get("rag")
        reasons.append(
            f"Answers depend on facts absent from the questions: {p.novelty:.0%} of answer words are not "
            f"in the input, and {p.doc_coverage:.0%} of those are in your documents."
        )
        if rag is not None:
            gain = rag.value - prompted.value
            reasons.append(
                f"Measured: RAG {metric} {rag.value:.3f} vs best prompt ({prompted.name}) "
                f"{prompted.value:.3f} ({gain:+.3f})."
            )
            if gain < 0.05:
                reasons.append(
                    "RAG did not clearly beat prompting with this base model: check retrieval recall "
                    "(`tunesmith rag eval`) and consider a larger base model before fine-tuning."
                )
        reasons.append(
            "Fine-tuning memorises training questions, not documents: retrieval keeps facts current "
            "and citable."
        )
        if p.regular_format and rag is not None and rag.value < target:
            reasons.append(
                f"The answers also follow a fixed format ({p.format_reason}) and RAG alone stays below the "
                f"target {target:g}: fine-tune on retrieved context (RAFT) to teach it."
            )
            return "fine-tune + rag", reasons
        return "rag", reasons
    if knowledge and not has_docs:
        reasons.append(
            f"{p.novelty:.0%} of answer words are absent from the inputs and no documents are configured: "
            "the answers depend on outside facts. Add the documents that hold them (rag.docs)."
        )
        return "rag", reasons
    if prompted.value >= target:
        reasons.append(
            f"Measured: the prompted base model ({prompted.name}) already reaches {metric} "
            f"{prompted.value:.3f} >= target {target:g}; fine-tuning would cost more than it gains."
        )
        return "prompt", reasons
    reasons.append(
        f"Measured: the best prompt ({prompted.name}) reaches {metric} {prompted.value:.3f}, below the "
        f"target {target:g} (gap {target - prompted.value:.3f})."
    )
    if p.regular_format:
        reasons.append(
            f"The answers follow a fixed format ({p.format_reason}): the behaviour fine-tuning teaches best."
        )
    if p.novelty is not None:
        reasons.append(
            f"Only {p.novelty:.0%} of answer words are new relative to the input: the task is transforming "
            "inputs, not recalling outside facts."
        )
    return "fine-tune", reasons


# --------------------------------------------------------------------------- cost and data


def expected_cost(
    cfg: ProjectConfig, recommendation: str, baselines: list[Baseline], index_s: float | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by = {b.name: b for b in baselines}
    if "fine-tune" in recommendation:
        from tunesmith.advisor.run import EstimateRequest, run_estimate

        est = run_estimate(
            EstimateRequest(
                model=cfg.model.name,
                method=cfg.train.finetune,
                data=cfg.data.train,
                epochs=_epochs(cfg),
                lora_r=cfg.lora.r,
                max_seq_len=cfg.data.max_seq_len,
            )
        )
        cpu = next(g for g in est.gpus if g.name == "cpu")
        fitting = [g for g in est.gpus if g.fits and g.name != "cpu"]
        cheapest = min(fitting, key=lambda g: g.cost_usd) if fitting else None
        out["train_cpu_hours"] = cpu.hours
        out["train_text"] = (
            f"{cfg.train.finetune} fine-tuning, {est.workload.tokens:,.0f} tokens: ~{_dur(cpu.hours)} on "
            f"this CPU (uncalibrated; `tunesmith estimate --probe` measures it)"
            + (
                f", ~{_dur(cheapest.hours)} / {_usd(cheapest.cost_usd)} on {cheapest.name}"
                if cheapest
                else ""
            )
        )
        if cheapest:
            out["train_gpu"] = {"gpu": cheapest.name, "hours": cheapest.hours, "usd": cheapest.cost_usd}
    if "rag" in recommendation and index_s is not None:
        out["index_s"] = index_s
        rag = by.get("rag")
        out["rag_text"] = (
            f"indexing the documents took {index_s:.1f} s (measured); a RAG answer took "
            f"{rag.ms_per_request:,.0f} ms here (measured)"
            if rag
            else f"indexing took {index_s:.1f} s"
        )
    if recommendation == "prompt":
        best = max(baselines, key=lambda b: b.value)
        out["prompt_text"] = (
            f"no training; {best.name} answers took {best.ms_per_request:,.0f} ms each here (measured)"
        )
    return out


def data_needed(recommendation: str, p: Profile) -> str:
    """The data still needed, against common sizing guidance for each task."""
    if recommendation == "rag":
        return (
            f"no training examples needed; keep your {p.n_holdout} hold-out questions with answers to evaluate "
            "retrieval, and add documents for any question they cannot answer"
        )
    if recommendation == "prompt":
        return f"none to train; {p.n_holdout} hold-out examples are enough to monitor the prompt"
    n = p.n_train
    if p.task == "classification" and p.label_counts:
        k = len(p.label_counts)
        small = min(p.label_counts, key=p.label_counts.get)  # type: ignore[arg-type]
        return (
            f"{100 * k:,}-{1000 * k:,} examples recommended (100-1,000 per label, {k} labels); you have {n:,} "
            f"(smallest label {small!r}: {p.label_counts[small]})"
        )
    lo, hi = (500, 5000) if p.task == "extraction" else (1000, 10000)
    return f"{lo:,}-{hi:,} examples recommended; you have {n:,}"


def _notes(p: Profile) -> list[str]:
    notes = []
    if p.imbalance is not None and p.imbalance >= 3:
        notes.append(
            f"labels are imbalanced ({p.imbalance:.1f}x): report macro-F1, and add examples of the rare labels"
        )
    return notes


def _usd(x: float) -> str:
    return "<$0.01" if x < 0.01 else f"${x:,.2f}"


def _dur(hours: float) -> str:
    if hours < 1 / 3600:
        return "<1 s"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


def _epochs(cfg: ProjectConfig) -> float:
    # train.epochs, or what the trainer's rule will choose for this data (train/plan.py)
    from tunesmith.train.plan import planned_epochs

    if cfg.train.epochs != "auto" or cfg.data.train is None or not Path(cfg.data.train).is_file():
        return float(cfg.train.fixed("epochs"))
    with Path(cfg.data.train).open(encoding="utf-8", errors="replace") as fh:
        rows = sum(1 for line in fh if line.strip())
    held = 0.0 if cfg.data.holdout is not None else cfg.data.holdout_fraction
    return planned_epochs(cfg, max(round(rows * (1 - held)), 1))
