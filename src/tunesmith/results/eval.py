"""``EvalReport``: what ``tunesmith eval`` (and the demo, the remote evaluation, preference evaluation) reports.

Written once to ``<out>/report.json`` by ``write_eval_report`` and read back by ``read_eval_report`` (or
``eval_report_from_dict`` for a parsed object) everywhere else: the release gate, ``compare``, report.html,
the CLI tables, the advisor, the server's dashboard and the demo. Readers ask a candidate for a metric by
its path (``candidate.metric("label_scoring.accuracy")``) instead of walking nested dicts.

Shape (JSON keys are the field names): ``task``, ``n``, ``candidates`` (name -> ``Candidate``: ``metrics``,
``latency_ms``, ``timing_s``, ``scored_by``, ``matches``), ``gate``, ``applied`` (which metric families apply
and why), ``labels``, ``system_prompt``, ``scoring``, ``examples``, ``lengths``, ``training`` (loss curves)
and ``training_end`` (how the run ended), ``verdict`` (the conclusion in plain words), and the
optional ``preference`` (pairs, method, beta, generations) and ``demo`` sections.

Old report.json files still load: reports written before this type (no ``report_version``; preference
reports with ``n_pairs``/``generations``/``beta`` at the top; a remote report's ``completion_tokens`` inside
the candidate) are read into the same shape; keys no version knows go to ``extra``. The file on disk is
never rewritten. This module is in the bottom layer: it imports nothing from tunesmith but ``errors``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith.errors import TunesmithError

REPORT_VERSION = 1
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Latency(BaseModel):
    """Per-request latency summary in milliseconds (the wall time of the request's batch)."""

    model_config = _FROZEN
    p50: float = Field(description="Median, ms.")
    p95: float = Field(description="95th percentile, ms.")
    mean: float = Field(description="Mean, ms.")


class Candidate(BaseModel):
    """One candidate (``base:zero-shot``, ``base:few-shot``, ``base:rag``, ``finetuned``, ``base``)."""

    model_config = _FROZEN
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description="Numbers by name; groups (per_label, per_field, confusion, label_scoring) nest.",
    )
    latency_ms: Latency | None = Field(
        None, description="Latency summary (none for log-probability scoring)."
    )
    timing_s: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    wall_s: float | None = Field(None, description="Seconds this candidate took in all.")
    scored_by: str = Field("", description="How the metrics were computed, in words.")
    matches: dict[str, int] | None = Field(
        None,
        description="Label tasks: how many answers matched a label exact / normalised / in_answer / none.",
    )

    def metric(self, path: str) -> float | None:
        """The number at ``path`` (``accuracy``, ``label_scoring.accuracy``, ``per_label.billing.f1``,
        ``latency_ms.p95``), or None when this candidate has no such number."""
        node: Any = self.metrics
        parts = path.split(".")
        if parts[0] == "latency_ms":
            node, parts = (self.latency_ms.model_dump() if self.latency_ms else {}), parts[1:]
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, int | float):
            return None
        return float(node)

    def numbers(self) -> dict[str, float]:
        """The top-level numeric metrics (no groups), in order."""
        return {
            k: float(v)
            for k, v in self.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }


class GateRule(BaseModel):
    """One release-gate rule and its verdict."""

    model_config = _FROZEN
    rule: str
    passed: bool
    left: float | None = None
    right: float | None = None
    message: str = ""
    words: str = Field("", description="The rule and its outcome in plain words (empty in older reports).")


class Gate(BaseModel):
    """The release gate: passed when every rule holds (no rules: passed)."""

    model_config = _FROZEN
    passed: bool = True
    rules: list[GateRule] = Field(default_factory=list)


class Applied(BaseModel):
    """Which metric families were computed, and why (chosen from what the reference answers are)."""

    model_config = _FROZEN
    families: list[str] = Field(
        default_factory=list, description="Any of classification, label_scoring, extraction, text."
    )
    reason: str = Field("", description="The rule that chose them, with the numbers that met it.")


class Example(BaseModel):
    """A hold-out example where the candidates disagree."""

    model_config = _FROZEN
    index: int
    input: str
    reference: str
    answers: dict[str, str]
    correct: dict[str, bool]
    matched: dict[str, str] = Field(default_factory=dict, description="Label tasks: how each answer matched.")


class TrainingEnd(BaseModel):
    """How the evaluated run's training ended (from its summary.json), marked on the report's loss curves."""

    model_config = _FROZEN
    status: str = Field(description="completed, stopped (Ctrl-C or a stop request), early_stopped, ...")
    steps: int = Field(description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    best_step: int | None = Field(None, description="Step of the lowest hold-out loss.")
    weights: str | None = Field(None, description="Which weights were saved: final or best (step N).")


class PreferenceInfo(BaseModel):
    """Preference evaluation: the pairs and the run."""

    model_config = _FROZEN
    n_pairs: int = 0
    method: str | None = None
    beta: float | None = None
    reward_model: str | None = None
    generations: list[dict[str, Any]] = Field(default_factory=list)


class EvalReport(BaseModel):
    """An evaluation report (see the module docstring)."""

    model_config = _FROZEN
    report_version: int = REPORT_VERSION
    task: str
    n: int = 0
    candidates: dict[str, Candidate] = Field(default_factory=dict)
    gate: Gate = Field(default_factory=Gate)
    applied: Applied | None = None
    headline: list[str] = Field(
        default_factory=list, description="Metric paths shown first (the task's), e.g. accuracy, field_f1."
    )
    labels: list[str] = Field(default_factory=list)
    system_prompt: str | None = None
    scoring: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    adapter: str | None = None
    data: str | None = None
    examples: list[Example] = Field(default_factory=list)
    lengths: dict[str, list[int]] = Field(default_factory=dict, description="Answer lengths (tokens).")
    training: dict[str, list[list[float]]] = Field(
        default_factory=dict,
        description="Loss curves: loss ([step, train loss] per logged step), val_loss ([step, hold-out loss] "
        "per evaluation).",
    )
    training_end: TrainingEnd | None = Field(None, description="How the evaluated run's training ended.")
    wall_time_s: float | None = None
    verdict: str | None = Field(
        None,
        description="The report's conclusion in plain words: which candidate to use, by how much, on how "
        "many examples, and what the gate decided (eval/verdict.py; None in older reports).",
    )
    preference: PreferenceInfo | None = None
    graders: dict[str, Any] = Field(
        default_factory=dict,
        description="eval --grader: per grader its type, judge model (and weak-judge note) and calibration "
        "against human labels; the numbers are in each candidate's metrics.grader / grader_pass_rate / pairwise.",
    )
    demo: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="Keys of older reports no field holds.")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict ``write_eval_report`` writes."""
        return self.model_dump(mode="json")


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, a race for other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_eval_report(path: Path, report: EvalReport) -> Path:
    """Write ``report`` as JSON to ``path`` (a file, or a folder: then ``<folder>/report.json``), atomically.

    Raises:
        TunesmithError: when the folder cannot be written.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / "report.json"
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; report.html beside it follows the umask
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise TunesmithError(
            f"Cannot write the evaluation report {path}: {exc.strerror or exc}.",
            "Check the --out folder's permissions.",
        ) from None
    return path


def read_eval_report(path: Path) -> EvalReport:
    """The report in ``path`` (a ``report.json`` or a folder holding one), whatever version wrote it.

    Raises:
        TunesmithError: when the file is missing, not JSON, or not an evaluation report (naming the field).
    """
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunesmithError(
            f"{file} does not exist.", "Pass a report.json written by tunesmith eval."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunesmithError(
            f"Cannot read {file}: {exc}.", "Pass a report.json written by tunesmith eval."
        ) from None
    except json.JSONDecodeError as exc:
        raise TunesmithError(
            f"{file} is not valid JSON (line {exc.lineno}: {exc.msg}).",
            "Pass a report.json written by tunesmith eval.",
        ) from None
    return eval_report_from_dict(data, source=str(file))


def eval_report_from_dict(data: Any, *, source: str = "report") -> EvalReport:
    """``data`` (a parsed report.json, current or older shape) as an ``EvalReport``.

    Raises:
        TunesmithError: when ``data`` is not an evaluation report; the message names ``source`` and the field.
    """
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), dict):
        raise TunesmithError(
            f"{source} is not an evaluation report (no 'candidates' object).",
            "Pass a report.json written by tunesmith eval.",
        )
    if "report_version" not in data:
        data = _from_legacy(data)
    try:
        return EvalReport.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TunesmithError(
            f"{source}: field {where!r}: {err['msg']}.",
            "Pass a report.json written by tunesmith eval (or re-run the evaluation).",
        ) from None


_CANDIDATE_KEYS = set(Candidate.model_fields)
_LEGACY_HEADLINE = {  # what each task headed its report with before reports carried ``headline``
    "classification": ["accuracy", "macro_f1", "label_scoring.accuracy", "invalid_rate", "consistency"],
    "extraction": ["exact_match", "field_f1", "valid_json_rate", "consistency"],
    "chat": ["token_f1", "rouge_l", "exact_match", "format_pass_rate", "reward_score", "consistency"],
    "completion": ["token_f1", "rouge_l", "exact_match", "format_pass_rate", "reward_score", "consistency"],
    "preference": ["preference_accuracy", "reward_margin", "logp_margin", "generated_reward"],
}
_PREFERENCE_KEYS = ("n_pairs", "method", "beta", "reward_model", "generations")


def _from_legacy(old: dict[str, Any]) -> dict[str, Any]:
    """A report written before ``EvalReport`` (plain nested dicts) in the current shape."""
    task = str(old.get("task") or "unknown")
    new: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "task": task,
        "headline": _LEGACY_HEADLINE.get(task, []),
    }
    cands: dict[str, Any] = {}
    lengths = dict(old.get("lengths") or {})
    for name, c in (old.get("candidates") or {}).items():
        c = dict(c or {})
        if isinstance(c.get("completion_tokens"), list):  # the remote report kept them in the candidate
            lengths.setdefault(name, c["completion_tokens"])
        c["metrics"] = dict(c.get("metrics") or {})
        cands[name] = {k: v for k, v in c.items() if k in _CANDIDATE_KEYS}
    new["candidates"] = cands
    if lengths:
        new["lengths"] = lengths
    if old.get("task") == "preference":
        new["preference"] = {k: old[k] for k in _PREFERENCE_KEYS if old.get(k) is not None}
        new["n"] = int(old.get("n_pairs") or old.get("n") or 0)
    known = set(EvalReport.model_fields) - {
        "candidates",
        "lengths",
        "preference",
        "report_version",
        "task",
        "headline",
    }
    for k, v in old.items():
        if k in known and v is not None:
            new[k] = v
        elif k not in new and k not in _PREFERENCE_KEYS and k not in {"candidates", "lengths", "task"}:
            new.setdefault("extra", {})[k] = v
    return new
