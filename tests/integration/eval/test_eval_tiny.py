"""`tunesmith eval` / `compare` end to end on the tiny model: a real LoRA run, real baselines, the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.eval.metrics import classification_metrics, match_label

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "data"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, Path]:
    """A tiny LoRA run on ticket routing (a few steps) plus its train / hold-out files."""
    import sys

    from tunesmith.config import validate_config_dict
    from tunesmith.train.api import train

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "support_tickets"))
    import generate  # the demo's generator

    root = tmp_path_factory.mktemp("evaltiny")
    tr, ho = generate.write_dataset(root / "data", 24, 10, seed=3)
    cfg = validate_config_dict(
        {
            "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(tr), "holdout": str(ho), "max_seq_len": 128},
            "train": {
                "lr": 5e-3,
                "max_steps": 3,
                "batch_tokens": 512,
                "output_dir": str(root / "runs"),
                "run_name": "t1",
                "eval_every": 1,
            },
        }
    )
    res = train(cfg)
    assert res.status == "completed"
    return res.run_dir, tr, ho


def _eval(args: list[str]):
    return runner.invoke(app, ["eval", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory) -> tuple[Path, str, int]:
    """One `tunesmith eval` of the run against both baselines, with one rule that holds and one that cannot."""
    run_dir, tr, ho = tiny_run
    out = tmp_path_factory.mktemp("rep") / "rep"
    res = _eval(["--data", str(ho), "--adapter", str(run_dir), "--out", str(out), "--baselines", "zero-shot,few-shot",
                 "--require", "finetuned.accuracy>=0.0", "--require", "finetuned.label_scoring.accuracy>1.5"])  # fmt: skip
    return out, res.output, res.exit_code


def test_eval_report_shape_metrics_and_gate(evaluated):
    out, output, code = evaluated
    assert code == 1, output  # the second rule cannot hold
    assert "FAIL finetuned.label_scoring.accuracy>1.5" in output
    report = json.loads((out / "report.json").read_text())
    # issue 17: the verdict in words, the same sentence on the terminal and in report.json
    verdict = report["verdict"]
    assert verdict.startswith("The fine-tuned model gets ") and "of 10 hold-out examples" in verdict
    assert "Release gate FAILED: the fine-tuned model's accuracy by label likelihood" in report["verdict"]
    assert f"Verdict: {report['verdict']}" in " ".join(output.split())
    assert report["task"] == "classification" and report["n"] == 10
    assert list(report["candidates"]) == ["base:zero-shot", "base:few-shot", "finetuned"]
    for cand in report["candidates"].values():
        assert set(cand) >= {"metrics", "latency_ms"}
        assert cand["latency_ms"]["p95"] >= cand["latency_ms"]["p50"] > 0
        m = cand["metrics"]
        for key in (
            "accuracy",
            "macro_f1",
            "invalid_rate",
            "consistency",
            "tokens_per_s",
            "cost_per_1k_requests_usd",
        ):
            assert isinstance(m[key], float), key
        assert 0 <= m["label_scoring"]["accuracy"] <= 1 and m["label_scoring"]["invalid_rate"] == 0.0
        assert sum(map(sum, m["confusion"]["matrix"])) == 10
    gate = report["gate"]
    assert gate["passed"] is False and [r["passed"] for r in gate["rules"]] == [True, False]
    # the metrics agree with the saved answers, recomputed independently
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    labels = report["labels"]
    for name, cand in report["candidates"].items():
        recomputed = classification_metrics(
            [p["reference"] for p in preds], [match_label(p[name], labels) for p in preds], labels
        )
        assert cand["metrics"]["accuracy"] == pytest.approx(recomputed["accuracy"])
    assert (
        report["training"]["loss"] and report["training"]["val_loss"]
    )  # curves read from the run's metrics.jsonl
    assert "similarity" in report["scoring"]["few_shot"]


def test_report_html_is_self_contained(evaluated):
    out = evaluated[0]
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 8  # bars, 3 confusion matrices, loss curve, 3 histograms
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    assert "base:zero-shot" in html and "finetuned" in html and "validation loss" in html


def test_compare_reports_and_runs(tiny_run, evaluated):
    from tunesmith.eval.compare import compare

    run_dir, out = tiny_run[0], evaluated[0]
    report = json.loads((out / "report.json").read_text())
    comp = compare([out, run_dir])
    assert comp.columns == ["rep:base:zero-shot", "rep:base:few-shot", "rep:finetuned", "t1"]
    rows = dict(comp.rows)
    assert rows["accuracy"][2] == report["candidates"]["finetuned"]["metrics"]["accuracy"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert rows["final_train_loss"][3] == summary["final_train_loss"]
    res = runner.invoke(app, ["compare", str(out), str(run_dir)], catch_exceptions=False)
    assert res.exit_code == 0 and "rep:base:zero" in res.output and "accuracy" in res.output
    res = runner.invoke(app, ["compare", str(out / "predictions.jsonl")])
    assert res.exit_code == 1 and "not valid JSON" in res.output and "Traceback" not in res.output


def test_chat_and_extraction_tasks_on_base(tiny_model_dir, tmp_path):
    res = _eval(["--data", str(ASSETS / "chat.jsonl"), "--model", str(tiny_model_dir), "--out", str(tmp_path / "c"),
                 "--baselines", "zero-shot,few-shot", "--train", str(ASSETS / "chat.jsonl"), "--max-examples", "4", "--max-new-tokens", "12"])  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "c" / "report.json").read_text())["candidates"]["base:few-shot"]["metrics"]
    assert {"token_f1", "rouge_l", "exact_match", "consistency"} <= set(m)
    res = _eval(
        [
            "--data",
            str(ASSETS / "extraction.jsonl"),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "x"),
            "--baselines",
            "zero-shot",
            "--max-new-tokens",
            "12",
        ]
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "x" / "report.json").read_text())["candidates"]["base:zero-shot"]["metrics"]
    assert {"valid_json_rate", "exact_match", "field_f1", "per_field"} <= set(m)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--require", "finetuned.accuracy >> 2"], "not of the form"),
        (["--baselines", "zero-shot,rag"], "rag baseline needs an index"),
        (["--baselines", "ten-shot"], "Unknown baseline 'ten-shot'"),
        (["--baselines", "few-shot"], "needs training examples"),
    ],
)
def test_bad_input_is_one_clear_error(args, message, tiny_model_dir, tmp_path):
    res = runner.invoke(
        app,
        [
            "eval",
            "--data",
            str(ASSETS / "classification.jsonl"),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "o"),
            *args,
        ],
    )
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app, ["eval", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0 and "does not exist" in res.output and "Traceback" not in res.output
