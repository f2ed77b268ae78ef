"""Judge calibration (issue 14 item 3): agreement with human labels, its interval, the calibration file, and
the gate refusing a judge below eval.min_judge_agreement; `tunesmith grade` on a predictions file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.errors import TunesmithError
from tunesmith.eval.judged import judge_gate
from tunesmith.graders import load_grader
from tunesmith.graders.calibrate import calibrate, calibration_path, read_calibration, write_calibration
from tunesmith.results.eval import Gate, GateRule

pytestmark = pytest.mark.unit
runner = CliRunner()

# A stand-in "judge" whose verdicts are known: passes answers that contain the reference (ilike).
CHECK = {
    "type": "string_check",
    "name": "contains",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference}}",
    "operation": "ilike",
}


def labels_file(tmp_path: Path, rows: list[tuple[str, str, object]]) -> Path:
    f = tmp_path / "labels.jsonl"
    f.write_text(
        "".join(json.dumps({"output_text": a, "reference": r, "human": h}) + "\n" for a, r, h in rows)
    )
    return f


def test_kappa_and_accuracy_by_hand(tmp_path: Path) -> None:
    # 12 rows; the judge passes rows 0-5 (answer contains "ok"); people pass rows 0-3 and 6-7.
    # judge:  P P P P P P F F F F F F;  human: P P P P F F P P F F F F
    # agree on 8 of 12 -> accuracy 2/3; p_o = 2/3, p_e = (6/12)(6/12) + (6/12)(6/12) = 1/2,
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3 (Cohen 1960)
    human = [True] * 4 + [False] * 2 + [True] * 2 + [False] * 4
    rows = [("all ok" if i < 6 else "nope", "ok", h) for i, h in enumerate(human)]
    cal = calibrate(load_grader(CHECK), labels_file(tmp_path, rows))
    assert cal.statistic == "cohen_kappa" and cal.n == 12
    assert cal.accuracy == pytest.approx(2 / 3)
    assert cal.agreement == pytest.approx(1 / 3)
    assert -1 <= cal.ci_low < cal.agreement < cal.ci_high <= 1


def test_spearman_for_scores_by_hand(tmp_path: Path) -> None:
    grader = load_grader(
        {"type": "python", "name": "length", "source": "def grade(s, i):\n    return len(s['output_text'])\n"}
    )
    # judge scores 1..10 (answer lengths), people score them in the same order except one swap (rows 8, 9):
    # d = (0,..,0,1,-1) -> rho = 1 - 6 * 2 / (10 * 99) = 1 - 12/990
    answers = ["x" * n for n in range(1, 11)]
    human = [1, 2, 3, 4, 5, 6, 7, 8, 10, 9]
    rows = [(a, "", h) for a, h in zip(answers, human, strict=True)]
    cal = calibrate(grader, labels_file(tmp_path, rows))
    assert cal.statistic == "spearman" and cal.accuracy is None
    assert cal.agreement == pytest.approx(1 - 12 / 990)


def test_labels_file_problems_are_named(tmp_path: Path) -> None:
    g = load_grader(CHECK)
    with pytest.raises(TunesmithError, match="3 labelled rows; calibration needs at least 10"):
        calibrate(g, labels_file(tmp_path, [("a", "a", True)] * 3))
    with pytest.raises(TunesmithError, match="mixes scores and verdicts"):
        calibrate(g, labels_file(tmp_path, [("a", "a", True)] * 6 + [("a", "a", 0.5)] * 6))
    with pytest.raises(TunesmithError, match="one verdict"):
        calibrate(g, labels_file(tmp_path, [("a", "a", True)] * 12))


def _gate_on(rule: str) -> Gate:
    return Gate(passed=True, rules=[GateRule(rule=rule, passed=True, left=0.95, right=0.9, message="holds")])


def test_gate_refuses_a_judge_below_min_agreement_and_an_uncalibrated_one(tmp_path: Path) -> None:
    spec_file = tmp_path / "policy.json"
    spec_file.write_text(json.dumps(CHECK))
    g = load_grader(spec_file)
    human = [True] * 4 + [False] * 2 + [True] * 2 + [False] * 4
    cal = calibrate(
        g, labels_file(tmp_path, [("all ok" if i < 6 else "nope", "ok", h) for i, h in enumerate(human)])
    )
    write_calibration(calibration_path(spec_file), cal)
    assert calibration_path(spec_file).name == "policy.calibration.json"
    assert read_calibration(spec_file, g.spec) == cal
    info = {"contains": {"judge": True, "file": str(spec_file), "calibration": cal.model_dump()}}

    low = judge_gate(_gate_on("finetuned.grader.contains>=0.9"), info, 0.4)  # kappa 1/3 < 0.4
    assert low.passed is False
    assert "agrees with people at 0.33, below eval.min_judge_agreement 0.4" in low.rules[0].message
    assert judge_gate(_gate_on("finetuned.grader.contains>=0.9"), info, 0.3).passed is True
    assert judge_gate(_gate_on("finetuned.accuracy>=0.9"), info, 0.4).passed is True  # not the judge's number
    assert judge_gate(_gate_on("finetuned.grader.contains>=0.9"), info, None).passed is True  # check off

    none = {"contains": {"judge": True, "file": "policy.json", "calibration": None}}
    assert (
        "is not calibrated"
        in judge_gate(_gate_on("finetuned.grader_pass_rate.contains>0.5"), none, 0.4).rules[0].message
    )

    # a changed grader makes its calibration stale: treated as missing
    spec_file.write_text(json.dumps({**CHECK, "operation": "like"}))
    assert read_calibration(spec_file, load_grader(spec_file).spec) is None


def test_grade_command_on_eval_predictions_and_calibrate_command(tmp_path: Path) -> None:
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps(CHECK))
    preds = tmp_path / "predictions.jsonl"
    preds.write_text(
        json.dumps({"index": 0, "input": "q", "reference": "billing", "base:zero-shot": "no", "finetuned": "Billing."}) + "\n"
        + json.dumps({"index": 1, "input": "q", "reference": "account", "base:zero-shot": "account", "finetuned": "account"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "grades.jsonl"
    res = runner.invoke(app, ["grade", str(grader), str(preds), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    grades = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(g["candidate"], g["score"]) for g in grades] == [
        ("base:zero-shot", 0.0), ("base:zero-shot", 1.0), ("finetuned", 1.0), ("finetuned", 1.0)
    ]  # fmt: skip
    assert "0.500" in res.output and "1.000" in res.output

    human = [True] * 4 + [False] * 2 + [True] * 2 + [False] * 4
    labels = labels_file(tmp_path, [("all ok" if i < 6 else "nope", "ok", h) for i, h in enumerate(human)])
    res = runner.invoke(
        app, ["grade", "calibrate", str(grader), "--labels", str(labels)], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    assert "Cohen's kappa 0.33" in res.output
    assert json.loads((tmp_path / "g.calibration.json").read_text())["agreement"] == pytest.approx(1 / 3)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"output_text": "a"}\nnot json\n')
    res = runner.invoke(app, ["grade", str(grader), str(bad)])
    assert res.exit_code == 1 and "bad.jsonl:2: not valid JSON" in res.output


def test_the_bootstraps_kappa_is_scikit_learns() -> None:
    import random

    from sklearn.metrics import cohen_kappa_score

    from tunesmith.graders.calibrate import _kappa_fast

    rng = random.Random(0)
    for _ in range(50):
        a = [rng.choice("xyz") for _ in range(15)]
        b = [rng.choice("xyz") if rng.random() < 0.5 else v for v in a]
        assert _kappa_fast(a, b) == pytest.approx(cohen_kappa_score(a, b))
