"""Crash safety with real worker processes: kill -9 of the worker, and of the whole server, mid-training;
the job resumes from its last recorded checkpoint and ends with the same loss as an uninterrupted job.
Also: cancel is prompt and idempotent on a running job, and the worker lives on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import openai
import pytest
from serve_int_toy import add_lines, final_train_loss, start_app, wait_for

from tunesmith.serve.store import Store
from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.integration

OVERRIDES = ["train.max_steps=6", "train.save_every=2", "train.keep_checkpoints=10", "data.max_seq_len=64"]
HYPER = {"learning_rate_multiplier": 50, "n_epochs": 20}
TOL = 1e-3  # relative; the training engine's own resume test holds 1e-4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead too
        return fh.read().split(")")[-1].split()[0] != "Z"


def _checkpoint_at_least(store: Store, job_id: str, step: int) -> bool:
    return any(c["step"] >= step for c in store.list_checkpoints(job_id, None, 100)[0])


def _running_step(store: Store, job_id: str) -> int:
    return max([m["step"] for m in store.metrics_series(job_id) if "train_loss" in m] or [0])


def test_kill_worker_mid_training_resumes_to_the_same_loss(tmp_path: Path) -> None:
    app = start_app(tmp_path / "data", OVERRIDES, concurrency=2)
    store = app.state.store
    try:
        client = in_process_client(app)
        f = client.files.create(file=("add.jsonl", add_lines(16)), purpose="fine-tune")
        victim = client.fine_tuning.jobs.create(
            model="tiny", training_file=f.id, seed=3, hyperparameters=HYPER
        )
        reference = client.fine_tuning.jobs.create(
            model="tiny", training_file=f.id, seed=3, hyperparameters=HYPER
        )
        wait_for(lambda: _checkpoint_at_least(store, victim.id, 2), 180, "a first checkpoint")
        pid = store.get_job(victim.id)["worker_pid"]
        killed_at = _running_step(store, victim.id)
        os.kill(pid, signal.SIGKILL)
        for j in (victim, reference):
            wait_for(
                lambda j=j: client.fine_tuning.jobs.retrieve(j.id).status in ("succeeded", "failed"),
                240,
                "both jobs",
            )
        assert client.fine_tuning.jobs.retrieve(victim.id).status == "succeeded"
        assert client.fine_tuning.jobs.retrieve(reference.id).status == "succeeded"
        msgs = [e.message for e in client.fine_tuning.jobs.list_events(victim.id, limit=100)]
        assert sum(m.startswith("Worker lost") for m in msgs) == 1
        restarts = [m for m in msgs if m.startswith("Job restarted (attempt 2) from step")]
        assert len(restarts) == 1 and "attempt 3" not in " ".join(msgs)
        resumed_from = int(restarts[0].rsplit(" ", 1)[1])
        assert 2 <= resumed_from <= max(killed_at, 2)
        step_a, loss_a = final_train_loss(store, victim.id)
        step_b, loss_b = final_train_loss(store, reference.id)
        assert step_a == step_b == 6
        assert abs(loss_a - loss_b) <= TOL * abs(loss_b), (loss_a, loss_b)
        ckpt_steps = [c["step"] for c in store.list_checkpoints(victim.id, None, 100)[0]]
        assert len(ckpt_steps) == len(set(ckpt_steps))  # every checkpoint recorded once
        assert not _alive(pid) and pid not in app.state.supervisor.worker_pids()
    finally:
        app.state.supervisor.stop()
        app.state.engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, overrides: list[str] = OVERRIDES) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tunesmith",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--concurrency",
        "1",
    ]
    for o in overrides:
        cmd += ["--train-override", o]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return httpx2.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
        except httpx2.HTTPError:
            return False

    wait_for(up, 60, "the server to listen")
    return proc


# Long enough that the kill lands while the job trains (6 tiny steps can finish between two polls of a
# loaded machine, and the test would then kill an idle server).
RESTART_STEPS = 40
RESTART_OVERRIDES = [
    f"train.max_steps={RESTART_STEPS}" if o.startswith("train.max_steps=") else o for o in OVERRIDES
]


def test_kill_server_mid_training_restart_finishes_the_job(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", _free_port()
    server = _serve(data_dir, port, RESTART_OVERRIDES)
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="x",
            max_retries=0,
            _strict_response_validation=True,
        )
        f = client.files.create(file=("add.jsonl", add_lines(16)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=3, hyperparameters=HYPER)
        store = Store(data_dir / "tunesmith.db")
        worker = (
            wait_for(  # the pid read with the state it belongs to: a running job past its first checkpoint
                lambda: (
                    (j := store.get_job(job.id))["status"] == "running"
                    and _checkpoint_at_least(store, job.id, 2)
                    and j["worker_pid"]
                ),
                180,
                "a first checkpoint of the running job",
            )
        )
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        wait_for(
            lambda: not _alive(worker), 10, "the worker to die with its server"
        )  # no orphan keeps training
        assert store.get_job(job.id)["status"] == "running"  # what a crash leaves behind
        server = _serve(data_dir, port, RESTART_OVERRIDES)
        done = wait_for(
            lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
            240,
            "the job",
        )
        assert done.status == "succeeded", done.error
        msgs = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any(m.startswith("Job restarted (attempt 2) from step") for m in msgs)
        step, loss = final_train_loss(store, job.id)
        assert step == RESTART_STEPS and loss > 0
        r = client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=[{"role": "user", "content": "add 1 2"}],
            temperature=0,
            max_tokens=4,
        )
        assert r.usage.completion_tokens >= 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_cancel_running_job_is_prompt_and_idempotent(tmp_path: Path) -> None:
    app = start_app(tmp_path / "data", ["train.max_steps=400", "data.max_seq_len=64"], stop_grace_s=20)
    store = app.state.store
    try:
        client = in_process_client(app)
        f = client.files.create(file=("add.jsonl", add_lines(16)), purpose="fine-tune")
        long_job = client.fine_tuning.jobs.create(
            model="tiny", training_file=f.id, hyperparameters={"n_epochs": 50}
        )
        nxt = client.fine_tuning.jobs.create(model="tiny", training_file=f.id, metadata={"next": "1"})
        wait_for(lambda: _running_step(store, long_job.id) >= 1, 120, "training to start")
        answer = client.fine_tuning.jobs.cancel(long_job.id)
        assert answer.status == "cancelled"  # the answer does not wait for the worker to stop
        assert client.fine_tuning.jobs.cancel(long_job.id).status == "cancelled"  # idempotent
        wait_for(lambda: store.get_job(long_job.id)["worker_pid"] is None, 15, "the worker to let go")
        stopped_at = _running_step(store, long_job.id)
        assert stopped_at < 400  # stopped mid-run, not at the end of its 400 steps
        wait_for(
            lambda: store.get_job(nxt.id)["status"] != "queued", 30, "the same worker to take the next job"
        )
        wait_for(lambda: _running_step(store, nxt.id) >= 1, 120, "the next job's first step")
        assert _running_step(store, long_job.id) == stopped_at  # nothing trained it while the next job ran
        assert client.fine_tuning.jobs.retrieve(long_job.id).status == "cancelled"
        client.fine_tuning.jobs.cancel(nxt.id)
    finally:
        app.state.supervisor.stop()
        app.state.engine.close()
