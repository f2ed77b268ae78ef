"""Judged evaluation end to end (issue 14, acceptance 2): `tunesmith eval --grader` with the judges served by a
real `tunesmith serve` process over HTTP (the tiny model), a pairwise judge of finetuned against the baseline
in both orders, the judges' numbers recomputed from the server's own request log, and the gate refusing an
uncalibrated judge."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.graders.judge import parse_score

pytestmark = pytest.mark.integration
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """`tunesmith serve` in its own process, logging every chat request to its database."""
    sys.path.insert(0, str(ROOT / "tests" / "integration" / "serve"))
    from serve_int_toy import wait_for

    data_dir, port = tmp_path_factory.mktemp("judge") / "data", _free_port()
    cmd = [sys.executable, "-m", "tunesmith", "serve", "--port", str(port), "--data-dir", str(data_dir),
           "--concurrency", "0", "--log-requests"]  # fmt: skip
    log = open(data_dir.parent / "serve.log", "wb")  # noqa: SIM115 (the server's own log, read on failure)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            return httpx2.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
        except httpx2.HTTPError:
            return proc.poll() is not None  # a server that died ends the wait (asserted below)

    wait_for(up, 60, "the judge server to listen")
    assert proc.poll() is None, "tunesmith serve exited"
    yield f"http://127.0.0.1:{port}/v1", data_dir
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """A tiny LoRA run (2 steps) on a free-text chat task, and its 4-row hold-out."""
    from tunesmith.config import validate_config_dict
    from tunesmith.train.api import train

    root = tmp_path_factory.mktemp("judged")
    rows = [
        {"messages": [{"role": "user", "content": f"How long does refund {i} take?"},
                      {"role": "assistant", "content": f"Refund {i} takes {i % 5 + 2} business days."}]}
        for i in range(16)
    ]  # fmt: skip
    tr, ho = root / "train.jsonl", root / "holdout.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in rows[:12]))
    ho.write_text("".join(json.dumps(r) + "\n" for r in rows[12:]))
    cfg = validate_config_dict(
        {
            "model": {"name": "tiny"},
            "data": {"train": str(tr), "max_seq_len": 64},
            "train": {
                "max_steps": 2,
                "batch_tokens": 256,
                "output_dir": str(root / "runs"),
                "run_name": "j1",
            },
        }
    )
    res = train(cfg)
    assert res.status == "completed"
    return res.run_dir, ho, root


def test_judged_eval_through_a_served_judge(judge_server, tiny_run) -> None:
    from tunesmith.serve.store import Store

    url, data_dir = judge_server
    run_dir, ho, root = tiny_run
    judge = {"type": "score_model", "name": "helpful", "model": "tiny", "range": [0, 10],
             "sampling_params": {"max_completions_tokens": 6},
             "input": [{"role": "system", "content": "Rate how helpful the answer is."},
                       {"role": "user", "content": "Question: {{item.input}}\nAnswer: {{sample.output_text}}"}]}  # fmt: skip
    pair = {
        "type": "pairwise",
        "name": "prefer",
        "model": "tiny",
        "sampling_params": {"max_completions_tokens": 4},
    }
    exact = {"type": "string_check", "name": "mentions_days", "input": "{{sample.output_text}}", "reference": "days",
             "operation": "ilike"}  # fmt: skip
    files = []
    for g in (judge, pair, exact):
        files += ["--grader", str(root / f"{g['name']}.json")]
        (root / f"{g['name']}.json").write_text(json.dumps(g))
    out = root / "report"
    res = runner.invoke(
        app,
        ["eval", "--data", str(ho), "--adapter", str(run_dir), "--out", str(out), "--baselines", "zero-shot",
         "--max-new-tokens", "8", *files, "--judge-url", url,
         "--require", "finetuned.grader.helpful>=0", "--require", "finetuned.grader_pass_rate.mentions_days>=0"],
        catch_exceptions=False,
    )  # fmt: skip
    # the judge has no calibration and eval.min_judge_agreement defaults to 0.4: its rule fails with that
    # reason, the string_check rule (not a judge) holds
    server_log = (data_dir.parent / "serve.log").read_text(errors="replace")[-3000:]
    assert res.exit_code == 1 and (out / "report.json").exists(), res.output + server_log
    report = json.loads((out / "report.json").read_text())
    rules = {r["rule"]: r for r in report["gate"]["rules"]}
    assert rules["finetuned.grader.helpful>=0"]["passed"] is False
    assert "judge 'helpful' is not calibrated" in rules["finetuned.grader.helpful>=0"]["message"]
    assert rules["finetuned.grader_pass_rate.mentions_days>=0"]["passed"] is True

    assert report["graders"]["helpful"]["model"] == f"tiny at {url}"
    assert report["graders"]["helpful"]["calibration"] is None
    assert report["graders"]["mentions_days"]["judge"] is False
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    cands = report["candidates"]
    for name in ("base:zero-shot", "finetuned"):
        hand = sum("days" in p[name].lower() for p in preds) / len(preds)
        assert cands[name]["metrics"]["grader_pass_rate"]["mentions_days"] == pytest.approx(hand)

    # every judge call went over HTTP to the server: 2 candidates x 4 answers scored, and 4 pairs judged twice
    rows = Store(data_dir / "tunesmith.db").request_logs()
    scored = [r for r in rows if "Rate how helpful" in r["messages"]]
    pairs = [r for r in rows if "Answer A:" in r["messages"]]
    assert len(scored) == 8 and len(pairs) == 8
    # the report's judged means are the server's logged replies, parsed (no score -> the range's low end, 0)
    total = sum(parse_score(r["response"], 0, 10) or 0.0 for r in scored)
    assert sum(cands[n]["metrics"]["grader"]["helpful"] * 4 for n in cands) == pytest.approx(total)
    # both orders of presentation were asked: each pair once with finetuned's answer as A, once as B
    shown = []
    for r in pairs:
        text = json.loads(r["messages"])[-1]["content"]
        a = text.split("Answer A:\n", 1)[1].split("\n\nAnswer B:\n", 1)
        shown.append((a[0], a[1].split("\n\nWhich answer is better?", 1)[0]))
    for p in preds:
        assert (p["finetuned"], p["base:zero-shot"]) in shown and (
            p["base:zero-shot"],
            p["finetuned"],
        ) in shown
    v = cands["finetuned"]["metrics"]["pairwise"]["prefer"]["base:zero-shot"]
    assert v["n"] == 4 and v["win"] + v["tie"] + v["loss"] == pytest.approx(1.0)
    assert {"first_position_rate", "order_consistency", "unparsed"} <= set(v)

    html = (out / "report.html").read_text()
    assert "Graders and judges" in html and "not calibrated against human labels" in html
    assert "each judged in both orders" in html
    assert "judge 'helpful' is not calibrated" in " ".join(res.output.split())
