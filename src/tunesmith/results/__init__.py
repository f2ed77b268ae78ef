"""Typed results that cross packages: the bottom layer (imports nothing from tunesmith but ``errors``/``paths``).

Public API::

    from tunesmith.results import RunSummary, read_run_summary, write_run_summary

    summary = read_run_summary("runs/20260101-sft-lora")     # a run folder or its summary.json, any version
    summary.final_train_loss, summary.best_val_loss, summary.tokens_trained, summary.extras
    write_run_summary(run_dir, summary)                       # <run_dir>/summary.json, atomically

    from tunesmith.results import read_eval_report

    report = read_eval_report("eval-out")                     # a report.json or its folder, any version
    report.candidates["finetuned"].metric("label_scoring.accuracy"), report.gate.passed, report.applied
"""

from tunesmith.results.eval import (
    Candidate,
    EvalReport,
    Gate,
    eval_report_from_dict,
    read_eval_report,
    write_eval_report,
)
from tunesmith.results.run import (
    DpoExtras,
    LoopExtras,
    PpoExtras,
    RewardExtras,
    RlExtras,
    RunSummary,
    read_run_summary,
    run_summary_from_dict,
    write_run_summary,
)

__all__ = [
    "Candidate",
    "EvalReport",
    "Gate",
    "eval_report_from_dict",
    "read_eval_report",
    "write_eval_report",
    "DpoExtras",
    "LoopExtras",
    "PpoExtras",
    "RewardExtras",
    "RlExtras",
    "RunSummary",
    "read_run_summary",
    "run_summary_from_dict",
    "write_run_summary",
]
