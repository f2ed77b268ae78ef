"""The main job in CI: `tunesmith demo --quick` with the real SmolLM2-135M, end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.real


@pytest.mark.timeout(900)
def test_quick_demo_fine_tuned_beats_prompted_baselines(tmp_path, smollm2_dir):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report" / "report.json").read_text())
    cands = report["candidates"]
    assert list(cands) == ["base:zero-shot", "base:few-shot", "finetuned"]
    ft = cands["finetuned"]["metrics"]
    for base in ("base:zero-shot", "base:few-shot"):
        b = cands[base]["metrics"]
        # clearly better (10 points or more), by both scorings: the generated answer and the label log-likelihood
        assert ft["accuracy"] >= b["accuracy"] + 0.1, (base, ft["accuracy"], b["accuracy"])
        assert ft["label_scoring"]["accuracy"] >= b["label_scoring"]["accuracy"] + 0.1
    assert report["gate"]["passed"] is True
    stages = [s["stage"] for s in report["demo"]["stages"]]
    assert stages == [
        "generate data",
        "check data",
        "split (stratified)",
        "prompted baselines",
        "fine-tune (LoRA)",
        "evaluate fine-tuned",
        "report",
    ]
    assert report["training"]["loss"] and report["demo"]["train_summary"]["status"] == "completed"
    assert (out / "report" / "report.html").stat().st_size > 5000
    assert "Time per stage" in res.output and "Prompted baseline vs fine-tuned" in res.output
