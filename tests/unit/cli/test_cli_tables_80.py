"""Issue 17: the CLI's result tables at 80 columns. No cell naming a candidate or a run is cut to an
ellipsis (base:zero-shot and base:few-shot stay apart), and latencies print with a unit and thousands
separators (68,151 ms, not 68150.660). `runs list` at 80 columns: tests/unit/cli/test_cli_runs_interrupted.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli import eval_cmd
from tunesmith.cli.main import app
from tunesmith.cli.render import console
from tunesmith.results.eval import eval_report_from_dict, read_eval_report

pytestmark = pytest.mark.unit
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "eval"
DEMO_NAMES = ["base:zero-shot", "base:few-shot", "finetuned"]


def _demo_like_report() -> dict:
    """The classification fixture with the demo's three candidates and a slow one (68 s per batch)."""
    d = json.loads((ASSETS / "report_classification_v0.json").read_text(encoding="utf-8"))
    few = copy.deepcopy(d["candidates"]["base:zero-shot"])
    few["latency_ms"] = {"p50": 68150.66, "p95": 71234.5, "mean": 69000.0}
    d["candidates"] = {"base:zero-shot": d["candidates"]["base:zero-shot"], "base:few-shot": few,
                       "finetuned": d["candidates"]["finetuned"]}  # fmt: skip
    return d


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


@pytest.fixture
def narrow(monkeypatch):  # noqa: ANN201
    monkeypatch.setattr(console, "width", 80)


def test_eval_tables_keep_candidate_names_whole_at_80_columns(narrow, capsys, tmp_path):
    reports = [eval_report_from_dict(_demo_like_report(), source="test")]
    reports += [read_eval_report(ASSETS / f) for f in ("report_remote_v0.json", "report_preference_v0.json")]
    for report in reports:
        eval_cmd.render_report(report)
        out = capsys.readouterr().out
        header = next(line for line in out.splitlines() if line.startswith("┃"))
        assert "…" not in out, out
        assert all(name in header for name in report.candidates), out
        assert max(len(line) for line in _table_lines(out)) <= 80, out
    eval_cmd.render_report(reports[0])
    out = capsys.readouterr().out
    assert "68,151 ms" in out and "71,234 ms" in out and "68150" not in out


def test_compare_keeps_report_names_whole_at_80_columns(narrow, tmp_path):
    a, b = tmp_path / "zero", tmp_path / "few"
    for folder in (a, b):
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(_demo_like_report()), encoding="utf-8")
    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    headers = [line for line in res.output.splitlines() if line.startswith("┃ metric")]
    assert "…" not in res.output, res.output
    assert max(len(line) for line in _table_lines(res.output)) <= 80, res.output
    names = [c.strip() for h in headers for c in h.strip("┃").split("┃")[1:]]
    expected = [f"{r}:{c}" for r in ("zero", "few") for c in DEMO_NAMES]
    assert names == expected, res.output  # 2 reports x 3 candidates, whole, over as many tables as fit
    assert "68,151 ms" in res.output


def test_logs_stats_keeps_model_ids_whole_at_80_columns(narrow, tmp_path, monkeypatch):
    import tunesmith.serve.monitor as monitor

    model = "ft:smollm2-135m-instruct:20261129-155913-sft-lora-2"
    (tmp_path / "tunesmith.db").write_bytes(b"")
    monkeypatch.setattr("tunesmith.serve.store.Store", lambda db: object())
    row = {
        "model": model,
        "requests": 12345,
        "completion_tokens": 987654,
        "p50_ms": 68150.66,
        "p95_ms": 71234.5,
    }
    monkeypatch.setattr(monitor, "log_stats", lambda store: [row])
    res = CliRunner().invoke(app, ["logs", "stats", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert model in res.output and "…" not in res.output, res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80, res.output
    assert "12,345 requests" in res.output and "p50 68,151 ms" in res.output, res.output
    row["model"] = "ft:smollm2:run-1"  # short ids: the table
    res = CliRunner().invoke(app, ["logs", "stats", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "ft:smollm2:run-1" in res.output and "…" not in res.output, res.output
    assert "68,151 ms" in res.output and max(len(line) for line in _table_lines(res.output)) <= 80, res.output
