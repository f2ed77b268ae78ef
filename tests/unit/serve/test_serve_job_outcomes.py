"""How the jobs worker ends a run that went wrong: a diverged run (non-finite loss) or one the training
refused (TunesmithError, e.g. its divergence guard) ends ``failed`` with an error and publishes no model,
not even its checkpoints; a multiplier that makes an absurd learning rate is refused before training.
Case: job-infinite-lr-succeeds (the worker part). The training function is replaced by a scripted one that
reports what a diverging run reports (the real divergence guard is tested with the training engine)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from serve_unit_toy import chat_lines, make_app

from tunesmith.errors import TunesmithError
from tunesmith.serve import jobs
from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.unit


def _claimed_job(tmp_path: Path, **create):  # noqa: ANN003
    app = make_app(tmp_path)
    client = in_process_client(app)
    fid = client.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="tiny", training_file=fid, suffix="nan", **create)
    store = app.state.store
    claimed = store.claim_job(12345)
    assert claimed is not None and claimed["id"] == job.id
    return app, client, store, claimed


def _diverging(run_dir: Path):  # noqa: ANN202
    def train(cfg, resume=None, on_progress=None, should_stop=None):  # noqa: ANN001, ANN202
        ckpt = run_dir / "checkpoints" / "step-1"
        ckpt.mkdir(parents=True)
        on_progress({"event": "start", "total_steps": 2})
        on_progress({"event": "step", "step": 1, "loss": 2.5, "total_steps": 2})
        on_progress({"event": "checkpoint", "step": 1, "path": str(ckpt)})
        on_progress({"event": "step", "step": 2, "loss": float("nan"), "total_steps": 2})
        summary = SimpleNamespace(tokens_trained=64, final_train_loss=float("nan"))
        return SimpleNamespace(run_dir=run_dir, summary=summary)

    return train


def test_a_diverged_run_fails_and_publishes_nothing(tmp_path: Path, monkeypatch) -> None:
    app, client, store, job = _claimed_job(tmp_path)
    monkeypatch.setattr(jobs, "_train", _diverging(tmp_path / "run"))
    jobs.run_job(store, job, app.state.settings.data_dir, [], threading.Event())
    done = client.fine_tuning.jobs.retrieve(job["id"])
    assert done.status == "failed" and done.fine_tuned_model is None
    assert done.error.code == "training_diverged" and "nan" in done.error.message.lower()
    models = {m.id for m in client.models.list()}
    assert not any(m.startswith("ft:") for m in models), models  # neither the model nor its checkpoint
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job["id"])]
    assert any(m.startswith("Job failed: Training diverged") for m in messages)
    assert not any("successfully completed" in m for m in messages)


def test_a_run_the_training_refuses_fails_with_its_message(tmp_path: Path, monkeypatch) -> None:
    app, client, store, job = _claimed_job(tmp_path)

    def refuse(cfg, resume=None, on_progress=None, should_stop=None):  # noqa: ANN001, ANN202
        raise TunesmithError("The training loss became NaN at step 3.", "Lower the learning rate.")

    monkeypatch.setattr(jobs, "_train", refuse)
    jobs.run_job(store, job, app.state.settings.data_dir, [], threading.Event())
    done = client.fine_tuning.jobs.retrieve(job["id"])
    assert done.status == "failed" and done.fine_tuned_model is None
    assert done.error.code == "training_failed" and "NaN at step 3" in done.error.message


def test_a_multiplier_giving_an_absurd_learning_rate_fails_before_training(tmp_path: Path) -> None:
    app, client, store, job = _claimed_job(tmp_path, hyperparameters={"learning_rate_multiplier": 500})
    with pytest.raises(jobs.JobInputError) as exc:
        jobs.job_config(job, app.state.settings.data_dir, ["train.lr=0.01"])
    assert exc.value.code == "invalid_hyperparameters" and "learning rate of 5" in exc.value.message
    ok = jobs.job_config(job, app.state.settings.data_dir, [])
    assert 0 < ok.train.lr <= 1
    assert json.loads(job["hyperparameters"])["learning_rate_multiplier"] == 500
