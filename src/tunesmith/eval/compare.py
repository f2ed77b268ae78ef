"""``tunesmith compare``: runs and evaluation reports side by side.

Each argument is a ``report.json``, a folder holding one (an eval ``--out`` folder, a demo's ``report/``),
a demo folder, or a training run folder (``summary.json``). Reports give one column per candidate
(prefixed with the report's name when several reports are compared); runs give their losses and costs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.results.eval import eval_report_from_dict
from tunesmith.results.run import run_summary_from_dict

RUN_KEYS = (
    "method",
    "finetune",
    "status",
    "steps",
    "final_train_loss",
    "best_train_loss",
    "best_val_loss",
    "tokens_trained",
    "wall_time_s",
    "peak_memory_mb",
)


@dataclass(frozen=True)
class Comparison:
    columns: list[str]  # one per candidate or run
    rows: list[tuple[str, list[Any]]]  # (metric, value per column)


def compare(paths: list[Path]) -> Comparison:
    """One table for every report candidate and run in ``paths``."""
    if not paths:
        raise TunesmithError(
            "Nothing to compare.", "Pass report.json files, eval --out folders or run folders."
        )
    sources = [load_source(Path(p)) for p in paths]
    columns: list[str] = []
    values: list[dict[str, Any]] = []
    many = len(sources) > 1
    for label, kind, data in sources:
        if kind == "run":  # any version of summary.json, read into the one RunSummary shape
            summary = run_summary_from_dict(data, source=f"{label}/summary.json", run_id=label)
            columns.append(label)
            values.append({k: getattr(summary, k) for k in RUN_KEYS})
            continue
        report = eval_report_from_dict(data, source=label)  # any version of report.json, typed
        keys = [
            *report.headline,
            "tokens_per_s",
            "cost_per_1k_requests_usd",
            "latency_ms.p50",
            "latency_ms.p95",
        ]
        for name, cand in report.candidates.items():
            columns.append(f"{label}:{name}" if many else name)
            values.append({k: cand.metric(k) for k in keys})
    keys: list[str] = []
    for v in values:
        keys += [k for k, x in v.items() if k not in keys and x is not None]
    return Comparison(columns, [(k, [v.get(k) for v in values]) for k in keys])


def load_source(path: Path) -> tuple[str, str, dict[str, Any]]:
    """``(label, "report"|"run", data)`` for one argument."""
    candidates = (
        [path]
        if path.is_file()
        else [path / "report.json", path / "report" / "report.json", path / "summary.json"]
    )
    for f in candidates:
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TunesmithError(
                    f"{f} is not valid JSON: {exc}", "Pass a report.json written by tunesmith eval."
                ) from None
            if not isinstance(data, dict):
                raise TunesmithError(
                    f"{f} does not hold a JSON object.", "Pass a report.json or a run folder."
                )
            kind = "report" if "candidates" in data else "run" if f.name == "summary.json" else ""
            if not kind:
                raise TunesmithError(
                    f"{f} is neither an evaluation report nor a run summary.",
                    "Pass a report.json written by tunesmith eval, or a run folder.",
                )
            label = (
                path.stem
                if path.is_file() and path.name != "report.json"
                else (path.parent.name if path.is_file() else path.name)
            )
            return label, kind, data
    raise TunesmithError(
        f"{path} holds no report.json or summary.json.",
        "Pass an eval --out folder, a report.json or a training run folder.",
    )
