"""EvalReport: one writer, one reader; report.json files written before the type still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.eval.compare import compare
from tunesmith.eval.gate import evaluate_gate
from tunesmith.eval.html import render_html
from tunesmith.results.eval import (
    Applied,
    Candidate,
    EvalReport,
    Latency,
    eval_report_from_dict,
    read_eval_report,
    write_eval_report,
)

pytestmark = pytest.mark.unit
OLD = Path(__file__).resolve().parents[2] / "assets" / "eval"


def test_old_classification_report_loads_typed():
    rep = read_eval_report(OLD / "report_classification_v0.json")
    assert rep.task == "classification" and rep.n == 3 and rep.report_version == 1
    ft = rep.candidates["finetuned"]
    assert ft.metric("accuracy") == 1.0 and ft.metric("label_scoring.accuracy") == 1.0
    assert ft.metric("latency_ms.p95") == 70.0 and ft.latency_ms == Latency(p50=60.0, p95=70.0, mean=62.0)
    zs = rep.candidates["base:zero-shot"]
    assert zs.metric("per_label.billing.f1") == pytest.approx(2 / 3)
    assert zs.metric("confusion") is None and zs.metric("no.such") is None  # groups and gaps are not numbers
    assert rep.gate.passed and rep.gate.rules[0].left == 1.0
    assert rep.headline[0] == "accuracy"  # old reports get their task's headline
    assert rep.examples[0].correct == {"base:zero-shot": False, "finetuned": True}
    assert rep.demo is not None and rep.demo["quick"] is True
    assert rep.training["loss"] == [[1.0, 2.0], [2.0, 1.5]]


def test_old_preference_and_remote_reports_load():
    pref = read_eval_report(OLD / "report_preference_v0.json")
    assert pref.task == "preference" and pref.n == 4
    assert pref.preference is not None and pref.preference.n_pairs == 4 and pref.preference.method == "dpo"
    assert pref.preference.beta == 0.1 and pref.preference.generations[0]["finetuned"] == "Hello!"
    assert pref.candidates["finetuned"].metric("preference_accuracy") == 0.75
    assert pref.candidates["base"].latency_ms is None and pref.gate.passed is False
    remote = read_eval_report(OLD / "report_remote_v0.json")
    assert remote.lengths == {"finetuned": [3, 5]}  # kept in the candidate before
    assert remote.candidates["finetuned"].metric("token_f1") == 0.5 and remote.model == "ft:tiny:abc"


def test_every_reader_takes_an_old_report(tmp_path):
    """compare, the HTML page and the gate read the old files through the type."""
    comp = compare([OLD / "report_classification_v0.json"])
    rows = dict(comp.rows)
    assert comp.columns == ["base:zero-shot", "finetuned"]
    assert rows["accuracy"] == [pytest.approx(1 / 3), 1.0] and rows["latency_ms.p95"] == [110.0, 70.0]
    html = render_html(read_eval_report(OLD / "report_classification_v0.json"))
    assert "Confusion matrices" in html and "PASSED" in html
    pref = read_eval_report(OLD / "report_preference_v0.json")
    assert "preference_accuracy" in render_html(pref)
    gate = evaluate_gate(["finetuned.preference_accuracy>base.preference_accuracy"], pref.candidates)
    assert gate.passed and gate.rules[0].left == 0.75


def test_write_then_read_is_the_same_report(tmp_path):
    rep = EvalReport(
        task="chat",
        n=2,
        candidates={
            "finetuned": Candidate(
                metrics={"accuracy": 0.5, "label_scoring": {"accuracy": 1.0}},
                latency_ms=Latency(p50=1.0, p95=2.0, mean=1.5),
                matches={"exact": 1, "normalised": 0, "in_answer": 0, "none": 1},
            )
        },
        applied=Applied(families=["classification"], reason="closed set"),
        headline=["accuracy"],
        labels=["C", "C++"],
    )
    path = write_eval_report(tmp_path / "out", rep)
    assert path == tmp_path / "out" / "report.json"
    assert read_eval_report(tmp_path / "out") == rep
    raw = json.loads(path.read_text())
    assert raw["report_version"] == 1 and raw["candidates"]["finetuned"]["matches"]["none"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"task": "chat"}', "no 'candidates' object"),
        (
            '{"report_version": 1, "task": "chat", "candidates": {"x": {"metrics": 3}}}',
            "candidates.x.metrics",
        ),
    ],
)
def test_bad_report_files_are_one_clear_error(tmp_path, content, message):
    f = tmp_path / "report.json"
    f.write_text(content)
    with pytest.raises(TunesmithError) as exc:
        read_eval_report(f)
    assert message in exc.value.message and exc.value.hint
    with pytest.raises(TunesmithError, match="does not exist"):
        read_eval_report(tmp_path / "missing.json")


def test_unknown_old_keys_are_kept_aside():
    rep = eval_report_from_dict({"task": "chat", "candidates": {}, "something_new": [1]})
    assert rep.extra == {"something_new": [1]}


def test_report_json_gets_the_permissions_of_the_files_beside_it(tmp_path):
    """report.json was written 0600 (mkstemp's mode) while report.html beside it was 0644: a teammate or a
    web server could read the page but not its data."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = write_eval_report(tmp_path / "out", EvalReport(task="classification"))
        html = tmp_path / "out" / "report.html"
        html.write_text("<html></html>")
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(html.stat().st_mode) == 0o644
        os.umask(0o077)
        path = write_eval_report(tmp_path / "private", EvalReport(task="classification"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a stricter umask is honoured
    finally:
        os.umask(old)
