"""The remote backend against tunesmith's own server (real worker, tiny model): local validation, upload,
job, followed events, hold-out evaluation with tunesmith eval's prompts and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve_int_toy import add_lines, start_app

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.serve.testing import in_process_client
from tunesmith.train.remote import job_request, train_remote
from tunesmith.workflows import remote

pytestmark = pytest.mark.integration


def test_remote_backend_trains_follows_and_evaluates(tmp_path: Path) -> None:
    train, holdout = tmp_path / "train.jsonl", tmp_path / "holdout.jsonl"
    train.write_bytes(add_lines(16))
    holdout.write_bytes(add_lines(4))
    app = start_app(tmp_path / "data", ["train.max_steps=3", "data.max_seq_len=64"])
    try:
        client = in_process_client(app)
        cfg = load_config(
            None,
            [
                "model.name=tiny",
                f"data.train={train}",
                f"data.holdout={holdout}",
                "train.lr=1e-3",
                "train.run_name=remote-demo",
                "eval.max_new_tokens=8",
            ],
        )
        assert job_request(cfg, "file-x", "chat")["method"]["supervised"]["hyperparameters"][
            "learning_rate_multiplier"
        ] == pytest.approx(5.0)
        seen: list[str] = []
        result = remote.run(cfg, client, on_event=seen.append, poll_s=0.3, out=tmp_path / "eval")
        assert result.status == "succeeded" and result.fine_tuned_model.startswith(
            "ft:tiny:local:remote-demo:"
        )
        assert seen[0].startswith("created remote job") and "Fine-tuning job started" in seen
        assert seen.index("Fine-tuning job started") < seen.index(
            "The job has successfully completed"
        )  # oldest first
        assert len(result.events) == len(set(result.events)) or any("Step" in e for e in result.events)
        m = result.report.candidates["finetuned"]
        assert result.report.n == 4 and 0.0 <= m.metric("token_f1") <= 1.0
        assert json.loads((tmp_path / "eval" / "report.json").read_text())["model"] == result.fine_tuned_model
        uploaded = client.files.list().data
        assert len(uploaded) == 1 and client.files.content(uploaded[0].id).read().count(b"\n") == 16
    finally:
        app.state.supervisor.stop()
        app.state.engine.close()


def test_remote_backend_refuses_bad_data_before_uploading(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(add_lines(12) + b'{"messages": [{"role": "user"}]}\n')
    app = start_app(tmp_path / "data", [], concurrency=0)
    client = in_process_client(app)
    cfg = load_config(None, ["model.name=tiny", f"data.train={bad}"])
    with pytest.raises(TunesmithError) as exc:
        train_remote(cfg, client)
    assert "13" in str(exc.value)  # names the line
    assert client.files.list().data == []  # nothing left the machine
    app.state.supervisor.stop()
