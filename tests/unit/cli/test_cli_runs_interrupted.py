"""Issue 17: a run recorded as `running` whose process is gone shows `interrupted` in `runs list`, with the
command that resumes it; the run id is never cut at 80 columns (it is what `eval` and --resume need)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.cli.render import console
from tunesmith.train.registry import PID_FILE, RunRegistry

pytestmark = pytest.mark.unit
runner = CliRunner()
LONG_ID = "20261129-155913-sft-lora-2"  # the default id of a second run started in the same second


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_stale_running_run_shows_interrupted_with_resume_command(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "width", 80)
    runs = tmp_path / "runs"
    reg = RunRegistry(runs)
    reg.add(LONG_ID, runs / LONG_ID, "sft", "lora", "smollm2-135m-instruct")
    reg.add("alive", runs / "alive", "sft", "lora", "tiny")  # this process: still running
    reg.add("done", runs / "done", "sft", "lora", "tiny")
    reg.set_status("done", "completed")
    assert (runs / "alive" / PID_FILE).read_text().split() == [str(os.getpid()), socket.gethostname()]
    (runs / LONG_ID / PID_FILE).write_text(f"{_dead_pid()} {socket.gethostname()}\n")

    res = runner.invoke(app, ["runs", "list", "--dir", str(runs)])
    assert res.exit_code == 0, res.output
    rows = {line.split()[1]: line for line in res.output.splitlines() if line.startswith("│ ")}
    assert LONG_ID in rows and "…" not in res.output  # whole id, nothing cut to an ellipsis
    table = [line for line in res.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 80  # (the resume hint is one soft-wrapped line)
    assert "interrupted" in rows[LONG_ID]
    assert "running" in rows["alive"] and "completed" in rows["done"]
    resume = f"tunesmith train {runs / LONG_ID / 'config.resolved.yaml'} --resume {runs / LONG_ID}"
    assert resume in res.output.replace("\n", "")

    listed = json.loads(runner.invoke(app, ["runs", "list", "--dir", str(runs), "--json"]).output)
    assert {r["run_id"]: r["status"] for r in listed} == {
        LONG_ID: "interrupted",
        "alive": "running",
        "done": "completed",
    }


def test_a_run_from_another_host_or_without_pid_file_keeps_its_recorded_status(tmp_path):
    runs = tmp_path / "runs"
    reg = RunRegistry(runs)
    reg.add("elsewhere", runs / "elsewhere", "sft", "lora", "tiny")
    (runs / "elsewhere" / PID_FILE).write_text(f"{_dead_pid()} some-other-host\n")
    reg.add("old", runs / "old", "sft", "lora", "tiny")
    (runs / "old" / PID_FILE).unlink()  # runs recorded before run.pid existed
    listed = json.loads(runner.invoke(app, ["runs", "list", "--dir", str(runs), "--json"]).output)
    assert {r["run_id"]: r["status"] for r in listed} == {"elsewhere": "running", "old": "running"}


def test_an_interrupted_run_can_be_removed_a_live_one_cannot(tmp_path):
    runs = tmp_path / "runs"
    reg = RunRegistry(runs)
    reg.add("dead", runs / "dead", "sft", "lora", "tiny")
    (runs / "dead" / PID_FILE).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    reg.add("alive", runs / "alive", "sft", "lora", "tiny")
    assert runner.invoke(app, ["runs", "rm", "dead", "--yes", "--dir", str(runs)]).exit_code == 0
    assert not (runs / "dead").exists()
    res = runner.invoke(app, ["runs", "rm", "alive", "--yes", "--dir", str(runs)])
    assert res.exit_code == 1 and "recorded as running" in res.output and (runs / "alive").exists()
