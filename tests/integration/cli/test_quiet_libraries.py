"""Issue 17: a plain tiny `tunesmith train` prints none of the libraries' noise on stderr (bitsandbytes'
kernels-community line, FutureWarnings, tqdm bars); it lands in $TUNESMITH_HOME/logs/libraries.log, and
`tunesmith --verbose` shows it. Runs the real console entry in a subprocess (the process-wide logging setup is
what is tested)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.integration

NOISE = ("kernels-community", "FutureWarning", "DeprecationWarning", "it/s]", "%|")


def _train(project, home, *pre: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNESMITH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS", "TQDM_DISABLE"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "tunesmith", *pre, "train", "tunesmith.yaml", "model.name=tiny"]
    cmd += ["train.max_steps=2"]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_train_stderr_has_no_library_noise_and_verbose_shows_it(tmp_path, monkeypatch):
    project = tmp_path / "p"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    monkeypatch.chdir(project)
    split = ["data", "split", "data/examples.jsonl", "--holdout", "0.2", "--out", "data/"]
    assert runner.invoke(app, split).exit_code == 0

    home = tmp_path / "home"
    quiet = _train(project, home)
    assert quiet.returncode == 0, quiet.stderr
    assert "completed" in quiet.stdout
    found = [n for n in NOISE if n in quiet.stderr]
    assert not found, quiet.stderr
    log = (home / "logs" / "libraries.log").read_text(encoding="utf-8")
    assert "kernels-community" in log  # routed, not lost

    loud = _train(project, tmp_path / "home2", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "kernels-community" in loud.stderr
