"""`tunesmith logs` and `tunesmith serve` argument checks through the CLI runner."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app as cli
from tunesmith.serve.store import Store

pytestmark = pytest.mark.unit


def test_logs_correct_and_export(tmp_path: Path) -> None:
    store = Store(tmp_path / "tunesmith.db")
    for q, a in (("hi", "hello"), ("2+2", "5")):
        store.log_request(
            {
                "created_at": 0.0,
                "model": "ft:tiny:local::x",
                "messages": json.dumps([{"role": "user", "content": q}]),
                "response": a,
                "latency_ms": 12.0,
                "prompt_tokens": 3,
                "completion_tokens": 1,
                "status": 200,
                "stream": 0,
            }
        )
    runner = CliRunner()
    ok = runner.invoke(cli, ["logs", "correct", "2", "4", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    out = tmp_path / "next.jsonl"
    assert runner.invoke(cli, ["logs", "export", str(out), "--data-dir", str(tmp_path)]).exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["messages"][-1]["content"] for x in lines] == ["hello", "4"]
    bad = runner.invoke(cli, ["logs", "correct", "99", "x", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "99" in bad.output


def test_serve_refuses_a_busy_port_and_a_missing_base_model(tmp_path: Path) -> None:
    runner = CliRunner()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = runner.invoke(
            cli, ["serve", "--port", str(port), "--data-dir", str(tmp_path), "--concurrency", "0"]
        )
    assert busy.exit_code == 1 and str(port) in busy.output
    missing = runner.invoke(
        cli, ["serve", "--base-model", str(tmp_path / "nope"), "--data-dir", str(tmp_path)]
    )
    assert missing.exit_code == 1 and "--base-model" in missing.output
