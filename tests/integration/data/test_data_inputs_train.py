"""The training side of the input rules: `train` refuses what `data check` reports (lone surrogates, CRLF
text read the same as LF), before any model is built (cases/lone-surrogate-passes-check-then-crashes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.integration

CASES = Path(__file__).parents[2] / "assets" / "cases"


def test_train_refuses_the_lone_surrogate_case_before_it_starts(tmp_path):
    shutil.copy(CASES / "lone-surrogate-passes-check-then-crashes" / "lone_surrogate.jsonl", tmp_path)
    cfg = tmp_path / "cfg_ls.yaml"
    cfg.write_text(
        "model:\n  name: tiny\ndata:\n  train: lone_surrogate.jsonl\n  max_seq_len: 64\n"
        "train:\n  method: sft\n  max_steps: 2\n  output_dir: runs\n"
    )
    res = CliRunner().invoke(app, ["train", str(cfg)])
    # the train command renders the error itself (exit 1); other CLI paths raise it to main()
    text = res.exception.message if isinstance(res.exception, TunesmithError) else res.output
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "line 21" in text and "unpaired surrogate \\ud800" in text, res.output
    assert not any((tmp_path / "runs").glob("*/checkpoints")), "a run was started"
