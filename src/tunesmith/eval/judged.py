"""Judged evaluation (``tunesmith eval --grader FILE``): graders over every candidate's answers, pairwise
judges of ``finetuned`` against each baseline, judge calibration beside the numbers, and the gate's refusal of
a judge that agrees too little with people.

Per candidate, each grader ``NAME`` adds ``metrics.grader.NAME`` (mean score) and
``metrics.grader_pass_rate.NAME`` (share of answers that pass), so a gate rule can say
``finetuned.grader.policy>=0.9``. A ``pairwise`` grader adds, to ``finetuned``,
``metrics.pairwise.NAME.<baseline>.{win,tie,loss,first_position_rate,order_consistency,n}``: each pair is
judged with finetuned's answer shown first and then second; a win (loss) needs both orders to agree.
``report.graders[NAME]`` says what the grader is (type, judge model, weak-judge note) and its calibration
(``tunesmith grade calibrate``), or that it has none.

Gate: a rule that reads a judge's number (``grader.NAME``, ``grader_pass_rate.NAME``, ``pairwise.NAME``)
fails with the reason when ``eval.min_judge_agreement`` is set and the judge's calibrated agreement (Cohen's
kappa or Spearman's rho) is below it, or the judge has no current calibration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.results.eval import EvalReport, Gate, GateRule


def check_graders(paths: tuple[Path, ...] | list[Path], endpoint: str | None = None) -> None:
    """Load every grader file once before any model runs (a bad grader fails in a second).

    Raises:
        TunesmithError: as ``tunesmith.graders.load_grader`` does, or when two graders share a name.
    """
    names: dict[str, Path] = {}
    for p in paths:
        g = _load(p, endpoint)
        try:
            if g.name in names:
                raise TunesmithError(
                    f"Graders {names[g.name]} and {p} are both named {g.name!r}.",
                    "Give each grader its own name (the report and gate rules use it).",
                )
            names[g.name] = Path(p)
        finally:
            g.close()


def add_graders(
    report: EvalReport,
    rows: list[dict[str, Any]],
    answers: dict[str, list[str]],
    paths: tuple[Path, ...] | list[Path],
    endpoint: str | None = None,
) -> EvalReport:
    """``report`` with every grader's numbers in its candidates and ``report.graders`` filled.

    ``rows``: the hold-out items (``input``, ``reference`` and the row's own fields); ``answers``: each
    candidate's answers in hold-out order. Raises TunesmithError as the graders do.
    """
    from tunesmith.graders import PairwiseJudge
    from tunesmith.graders.calibrate import read_calibration
    from tunesmith.graders.runs import summarize

    metrics = {name: dict(c.metrics) for name, c in report.candidates.items()}
    info: dict[str, Any] = {}
    for path in paths:
        g = _load(path, endpoint)
        try:
            cal = read_calibration(Path(path), g.spec) if g.judge else None
            info[g.name] = {
                **g.describe(),
                "file": str(path),
                "calibration": cal.model_dump() if cal else None,
            }
            if isinstance(g, PairwiseJudge):
                if "finetuned" not in answers:
                    raise TunesmithError(
                        f"Pairwise judge {g.name!r} compares finetuned with each baseline, and there is no finetuned.",
                        "Pass --adapter RUN, or drop the pairwise grader.",
                    )
                for other in (n for n in answers if n != "finetuned"):
                    v = g.compare(rows, answers["finetuned"], answers[other])
                    metrics["finetuned"].setdefault("pairwise", {}).setdefault(g.name, {})[other] = (
                        v.summary()
                    )
                continue
            for name, ans in answers.items():
                s = summarize(g.evaluate(ans, rows))
                metrics[name].setdefault("grader", {})[g.name] = s["mean"]
                metrics[name].setdefault("grader_pass_rate", {})[g.name] = s["pass_rate"]
                if s["unparsed"]:
                    metrics[name].setdefault("grader_unparsed", {})[g.name] = s["unparsed"]
        finally:
            g.close()
    cands = {n: c.model_copy(update={"metrics": metrics[n]}) for n, c in report.candidates.items()}
    return report.model_copy(update={"candidates": cands, "graders": info})


def judge_gate(gate: Gate, graders: dict[str, Any], min_agreement: float | None) -> Gate:
    """``gate`` with every rule that reads a judge's number failed when that judge's calibration is missing,
    stale or below ``min_agreement`` (None: judges are not checked)."""
    if min_agreement is None or not graders:
        return gate
    rules = []
    for r in gate.rules:
        reasons = [
            why
            for name, g in graders.items()
            if g.get("judge") and _reads(r.rule, name) and (why := _distrust(name, g, min_agreement))
        ]
        if reasons:
            msg = "; ".join(reasons)
            r = GateRule(
                rule=r.rule,
                passed=False,
                left=r.left,
                right=r.right,
                message=msg,
                words=f"{r.rule}: FAILED, {msg}",
            )
        rules.append(r)
    return Gate(passed=all(r.passed for r in rules), rules=rules)


def calibration_words(g: dict[str, Any]) -> str:
    """One line: the judge's calibration (or that it has none), for the report and the CLI."""
    cal = g.get("calibration")
    if not g.get("judge"):
        return "not a model judge (no calibration needed)"
    if not cal:
        return "not calibrated against human labels (tunesmith grade calibrate)"
    stat = "Cohen's kappa" if cal["statistic"] == "cohen_kappa" else "Spearman's rho"
    acc = f", accuracy {cal['accuracy']:.2f}" if cal.get("accuracy") is not None else ""
    return (
        f"{stat} {cal['agreement']:.2f} with people (95% CI {cal['ci_low']:.2f} to {cal['ci_high']:.2f}, "
        f"{cal['n']} labelled rows{acc})"
    )


def _reads(rule: str, name: str) -> bool:
    pattern = rf"\.(?:grader|grader_pass_rate|pairwise)\.{re.escape(name)}(?:$|[.\s<>=!])"
    return re.search(pattern, rule) is not None


def _distrust(name: str, g: dict[str, Any], min_agreement: float) -> str:
    cal = g.get("calibration")
    if not cal:
        return (
            f"judge {name!r} is not calibrated, and eval.min_judge_agreement is {min_agreement:g} "
            f"(run tunesmith grade calibrate {g.get('file', name)} --labels FILE)"
        )
    if cal["agreement"] < min_agreement:
        return (
            f"judge {name!r} agrees with people at {cal['agreement']:.2f}, below eval.min_judge_agreement "
            f"{min_agreement:g}: its numbers cannot pass a gate"
        )
    return ""


def _load(path: Path, endpoint: str | None) -> Any:
    from tunesmith.graders import load_grader

    return load_grader(Path(path), endpoint=endpoint)
