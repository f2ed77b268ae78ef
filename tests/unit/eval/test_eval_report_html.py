"""Issue 17: report.html opens with the verdict in words, explains each metric it shows, draws lower-is-better
metrics apart from higher-is-better ones, and its loss curves show what was measured and where a run stopped."""

from __future__ import annotations

import json
import re

import pytest

from tunesmith.eval.gate import evaluate_gate
from tunesmith.eval.html import render_html
from tunesmith.eval.run import training_curves
from tunesmith.eval.verdict import with_verdict
from tunesmith.results.eval import Candidate, EvalReport, TrainingEnd

pytestmark = pytest.mark.unit
HEADLINE = ["accuracy", "macro_f1", "label_scoring.accuracy", "invalid_rate", "consistency"]


def _report(**kw) -> EvalReport:
    def cand(right: int, invalid: float, p95: float) -> Candidate:
        metrics = {"accuracy": right / 80, "macro_f1": right / 80, "invalid_rate": invalid,
                   "label_scoring": {"accuracy": right / 80}, "cost_per_1k_requests_usd": p95 / 1e5}  # fmt: skip
        return Candidate(metrics=metrics, latency_ms={"p50": p95 / 2, "p95": p95, "mean": p95 / 2})

    cands = {"base:zero-shot": cand(1, 0.96, 3208.0), "base:few-shot": cand(59, 0.0, 7836.0),
             "finetuned": cand(79, 0.0, 2534.0)}  # fmt: skip
    gate = evaluate_gate(["finetuned.accuracy>base:few-shot.accuracy"], cands)
    return with_verdict(
        EvalReport(task="classification", n=80, candidates=cands, headline=HEADLINE, gate=gate, **kw)
    )


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    nxt = html.find("<h2>", start + 4)
    return html[start : nxt if nxt > 0 else len(html)]


def test_report_opens_with_the_verdict_and_gate_in_words():
    report = _report()
    html = render_html(report)
    first_card = re.search(r'<div class="card verdict">(.*?)</div>', html).group(1)
    assert first_card == report.verdict.replace("'", "&#x27;")
    assert html.index("card verdict") < html.index("<h2>")  # before any table or chart
    assert "gets 79 of 80 hold-out examples right; the best prompt (few-shot) gets 59" in first_card
    gate = html[html.index("Release gate:") : html.index("<h2>")]
    assert "the fine-tuned model&#x27;s accuracy (0.988) is above the few-shot prompt&#x27;s (0.738)" in gate
    assert ": holds" not in html


def test_every_metric_shown_has_a_glossary_line_and_direction():
    html = render_html(_report())
    glossary = html[html.index("What the numbers mean") :]
    glossary = glossary[: glossary.index("</ul>")]
    for path in ("accuracy", "macro_f1", "label_scoring.accuracy", "invalid_rate", "latency_ms.p95",
                 "cost_per_1k_requests_usd"):  # fmt: skip
        assert f"<code>{path}</code>" in glossary, path
    assert "<code>invalid_rate</code> (lower is better): share of answers that name no label" in glossary
    assert "<code>accuracy</code> (higher is better)" in glossary


def test_lower_is_better_metrics_are_drawn_apart():
    charts = _section(render_html(_report()), "Metrics per candidate")
    higher = charts[charts.index("Higher is better") : charts.index("Lower is better")]
    lower = charts[charts.index("Lower is better") :]
    assert ">invalid answers</text>" in lower and ">invalid answers</text>" not in higher
    assert ">accuracy</text>" in higher and ">accuracy</text>" not in lower
    table = _section(render_html(_report()), "Headline")
    # the best latency is the lowest one: the fine-tuned model's 2534 ms, not the few-shot prompt's 7836 ms
    assert '<td class="best">2534</td>' in table and '<td class="best">7836</td>' not in table
    even = {n: Candidate(metrics={"accuracy": 0.5}) for n in ("base:few-shot", "finetuned")}
    tie = EvalReport(task="classification", n=2, headline=["accuracy"], candidates=even)
    assert 'class="best"' not in _section(render_html(tie), "Headline")  # a tie marks nobody


def test_curves_of_a_stopped_run_show_the_measurements_and_the_stop(tmp_path):
    rows = [
        {"step": 0, "val_loss": 3.0},
        *({"step": s, "loss": 4.0 - s / 4} for s in range(1, 5)),
        {"step": 3, "loss": 3.3},
        {"step": 4, "val_loss": 2.5},
    ]  # fmt: skip  (step 3 logged again on resume)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    curves = training_curves(tmp_path)
    assert curves["loss"] == [[1.0, 3.75], [2.0, 3.5], [3.0, 3.3], [4.0, 3.0]]
    assert curves["val_loss"] == [[0.0, 3.0], [4.0, 2.5]]
    end = TrainingEnd(status="stopped", steps=4, total_steps=12, best_step=4, weights="final")
    curve = _section(render_html(_report(training=curves, training_end=end)), "Training and validation loss")
    assert "stopped (Ctrl-C or a stop request) at step 4 of 12" in curve
    assert curve.count("hold-out loss") >= 2 and "step 4: hold-out loss 2.5000" in curve
    assert curve.count("<circle") == 4 + 2 + 1  # 4 training steps, 2 evaluations, the best ring
    done = TrainingEnd(status="completed", steps=12, total_steps=12)
    assert "stopped" not in _section(
        render_html(_report(training=curves, training_end=done)), "Training and validation loss"
    )
