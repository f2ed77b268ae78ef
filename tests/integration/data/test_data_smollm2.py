"""The embedded SmolLM2: its chat template through `data check` and `data show` (tokenizer only, no weights run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.real

ASSETS = Path(__file__).parents[2] / "assets" / "data"


def test_check_and_show_with_smollm2_template(tmp_path, smollm2_dir):
    runner = CliRunner()
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        [
            "data",
            "check",
            str(ASSETS / "chat.jsonl"),
            "--model",
            "smollm2-135m-instruct",
            "--max-seq-len",
            "64",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    trunc = [w for w in report["warnings"] if w["code"] == "truncation"]
    assert trunc and report["stats"]["truncated_examples"] == len(trunc[0]["lines"]) > 0
    assert report["stats"]["tokens_per_example"]["min"] > 20  # the template's own tokens are counted
    res = runner.invoke(
        app,
        [
            "data",
            "show",
            str(ASSETS / "chat.jsonl"),
            "--model",
            "smollm2-135m-instruct",
            "-n",
            "1",
            "--markers",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        "<|im_start|>system" in res.output and "[[I am sorry" in res.output and "<|im_end|>]]" in res.output
    )
    assert "No findings" in res.output
