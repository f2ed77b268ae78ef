"""`tunesmith grade`: graders over a predictions file, and judge calibration; the work is in ``tunesmith.graders``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from tunesmith.cli.render import console
from tunesmith.errors import UsageError


class _RunByDefault(TyperGroup):
    """``tunesmith grade GRADER PREDICTIONS`` is ``tunesmith grade run GRADER PREDICTIONS``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


grade_app = typer.Typer(
    cls=_RunByDefault,
    help="Grade answers with graders in OpenAI's JSON shapes (docs/graders.md): "
    "`tunesmith grade GRADER.json PREDICTIONS.jsonl`, or calibrate a judge against human labels.",
    no_args_is_help=True,
)

_JUDGE_URL = typer.Option(
    None,
    "--judge-url",
    help="OpenAI-compatible base URL for model judges (e.g. http://127.0.0.1:8000/v1); default: the grader's "
    "base_url, else $TUNESMITH_JUDGE_URL / $OPENAI_BASE_URL, else a local model.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(grade_app, name="grade")


@grade_app.command("run")
def run_cmd(
    grader: Path = typer.Argument(..., help="Grader JSON file (OpenAI's grader shape)."),
    predictions: Path = typer.Argument(
        ..., help="JSONL: eval's predictions.jsonl, or rows with output_text and the item's fields."
    ),
    judge_url: str | None = _JUDGE_URL,
    against: str = typer.Option(
        "finetuned", "--candidate", help="Pairwise judges: the candidate compared with every other one."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write every row's grade to this JSONL file."),
) -> None:
    """Grade every answer in PREDICTIONS with GRADER; print each candidate's mean and pass rate."""
    from rich.table import Table

    from tunesmith.graders import PairwiseJudge, load_grader
    from tunesmith.graders.runs import read_predictions, summarize

    preds = read_predictions(predictions)
    g = load_grader(grader, endpoint=judge_url)
    try:
        if isinstance(g, PairwiseJudge):
            _pairwise(g, preds, against)
            return
        table = Table("candidate", "mean", "pass rate", "n", title=f"{g.name} ({g.kind})")
        rows: list[dict[str, Any]] = []
        for name, answers in preds.answers.items():
            with console.status(f"Grading {name} ({len(answers)} answers)..."):
                grades = g.evaluate(answers, preds.items)
            s = summarize(grades)
            table.add_row(name, f"{s['mean']:.3f}", f"{s['pass_rate']:.3f}", str(s["n"]))
            rows += [{"candidate": name, "row": i, **gr.__dict__} for i, gr in enumerate(grades)]
    finally:
        g.close()
    console.print(table)
    if g.judge:
        _judge_note(g, grader)
    if out is not None:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        console.print(f"Grades: {out}")


def _pairwise(g: Any, preds: Any, against: str) -> None:
    from rich.table import Table

    if against not in preds.answers or len(preds.answers) < 2:
        raise UsageError(
            f"A pairwise judge compares {against!r} with other candidates; this file has: "
            f"{', '.join(preds.answers)}.",
            "Pass eval's predictions.jsonl (with finetuned and a baseline), or --candidate NAME.",
        )
    table = Table(
        "vs", "win", "tie", "loss", "first shown chosen", "orders agree", title=f"{against} ({g.name})"
    )
    for other in preds.answers:
        if other == against:
            continue
        v = g.compare(preds.items, preds.answers[against], preds.answers[other]).summary()
        fp = "-" if v["first_position_rate"] is None else f"{v['first_position_rate']:.2f}"
        table.add_row(
            other,
            f"{v['win']:.2f}",
            f"{v['tie']:.2f}",
            f"{v['loss']:.2f}",
            fp,
            f"{v['order_consistency']:.2f}",
        )
    g.close()
    console.print(table)


def _judge_note(g: Any, grader_file: Path) -> None:
    from tunesmith.graders.calibrate import read_calibration

    info = g.describe()
    if info.get("weak"):
        console.print(f"[yellow]{info['note']}[/]", highlight=False)
    cal = read_calibration(grader_file, g.spec)
    if cal is None:
        console.print(
            f"judge {info.get('model')}: not calibrated (tunesmith grade calibrate {grader_file} --labels FILE)",
            highlight=False,
        )
    else:
        console.print(_calibration_line(cal), highlight=False)


def _calibration_line(cal: Any) -> str:
    name = "Cohen's kappa" if cal.statistic == "cohen_kappa" else "Spearman's rho"
    acc = f", accuracy {cal.accuracy:.2f}" if cal.accuracy is not None else ""
    return (
        f"calibration of {cal.grader} on {cal.n} human-labelled rows: {name} {cal.agreement:.2f} "
        f"(95% CI {cal.ci_low:.2f} to {cal.ci_high:.2f}){acc}"
    )


@grade_app.command("calibrate")
def calibrate_cmd(
    grader: Path = typer.Argument(..., help="Grader JSON file (usually a score_model or label_model judge)."),
    labels: Path = typer.Option(
        ...,
        "--labels",
        help="JSONL of about 30 rows: output_text, the item's fields, and human (verdict or score).",
    ),
    judge_url: str | None = _JUDGE_URL,
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the calibration (default: GRADER.calibration.json beside it)."
    ),
) -> None:
    """Compare a judge with human labels: Cohen's kappa (verdicts) or Spearman's rho (scores), with a 95% CI."""
    from tunesmith.graders import Grader, load_grader
    from tunesmith.graders.calibrate import calibrate, calibration_path, write_calibration

    g = load_grader(grader, endpoint=judge_url)
    if not isinstance(g, Grader):
        raise UsageError(
            "A pairwise judge compares two answers; calibrate a score_model or label_model grader."
        )
    try:
        with console.status(f"Grading the labelled rows of {labels}..."):
            cal = calibrate(g, labels)
    finally:
        g.close()
    path = write_calibration(out or calibration_path(grader), cal)
    console.print(_calibration_line(cal), highlight=False)
    console.print(f"Calibration: {path}")
