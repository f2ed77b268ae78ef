"""Fine-tuning jobs: the worker process that trains, and the supervisor (in the server) that keeps it alive.

Design choices:
- **Training never runs in the API process.** ``Supervisor`` starts ``concurrency`` worker processes
  (``python -m tunesmith.serve.jobs``); each claims one queued job at a time from SQLite (atomic claim,
  so no job runs twice) and calls ``tunesmith.train.api.train``.
- **Crash safety.** Workers die with the server (``PR_SET_PDEATHSIG``), so a kill -9 of either leaves a
  ``running`` row whose worker is gone. The supervisor re-queues such rows (at start and every tick) and
  the next claim resumes from the run folder: the training engine resumes from its last *complete*
  (atomically published) checkpoint. Checkpoints are recorded in the DB only after they are published.
- **Cancel and pause** set a flag and answer at once (``cancelled`` / ``paused``); the worker's
  ``should_stop`` reads the flag at every step boundary and a heartbeat thread every second. If the
  worker has not stopped within ``stop_grace_s`` the supervisor kills it (SIGKILL) and starts a fresh one.
- **Validation** happens in the worker (``validating_files`` -> ``queued``/``failed``), not in the
  request, so ``POST /fine_tuning/jobs`` answers in milliseconds (the SDK retries slow POSTs).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tunesmith.serve.store import Store

log = logging.getLogger("tunesmith.serve")
MIN_EXAMPLES = 10


class JobInputError(Exception):
    """The job's files cannot be trained on: becomes the failed job's ``error`` (code, message, param)."""

    def __init__(self, code: str, message: str, param: str = "training_file") -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


# --------------------------------------------------------------------------- supervisor (server side)


class Supervisor:
    """Keeps ``concurrency`` worker processes alive, re-queues orphaned jobs, escalates slow stops."""

    def __init__(
        self,
        data_dir: Path,
        concurrency: int = 1,
        overrides: list[str] | None = None,
        stop_grace_s: float = 10.0,
        tick_s: float = 0.5,
        lease_s: float = 60.0,
    ) -> None:
        self.data_dir, self.concurrency = Path(data_dir), concurrency
        self.overrides = list(overrides or [])
        self.stop_grace_s, self.tick_s, self.lease_s = stop_grace_s, tick_s, lease_s
        self.store = Store(self.data_dir / "tunesmith.db")
        self.procs: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.reconcile()
        for _ in range(self.concurrency):
            self.procs.append(self._spawn())
        self._thread = threading.Thread(target=self._watch, name="tunesmith-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def reconcile(self) -> list[str]:
        """Re-queue running jobs whose worker is dead; they resume from their last checkpoint."""
        live = set(self.worker_pids())
        requeued = []
        for job in self.store.orphaned_jobs():
            pid = job["worker_pid"]
            stale = time.time() - (job["heartbeat_at"] or 0) > self.lease_s  # backstop for pid reuse
            if pid in live or (_alive(pid) and pid not in self._our_dead() and not stale):
                continue
            if self.store.transition(job["id"], ("running",), status="queued", worker_pid=None):
                self.store.add_event(
                    job["id"], f"Worker lost; job re-queued, resumes from step {job['last_step']}", "warn"
                )
                requeued.append(job["id"])
        return requeued

    def _our_dead(self) -> set[int]:
        return {p.pid for p in self.procs if p.poll() is not None}

    def _spawn(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "tunesmith.serve.jobs", "--data-dir", str(self.data_dir)]
        for o in self.overrides:
            cmd += ["--override", o]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        return subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)

    def _watch(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the watcher must survive a busy database
                log.exception("supervisor tick failed")

    def _tick(self) -> None:
        dead = self._our_dead()
        self.reconcile()
        if dead:
            self.procs = [p for p in self.procs if p.poll() is None]
            while len(self.procs) < self.concurrency:
                self.procs.append(self._spawn())
        now = time.time()
        for job in self.store.stopping_jobs():
            if job["stop_requested_at"] and now - job["stop_requested_at"] > self.stop_grace_s:
                pid = job["worker_pid"]
                if pid in self.worker_pids():
                    log.warning(
                        "worker %s did not stop job %s in %.0fs: killing it",
                        pid,
                        job["id"],
                        self.stop_grace_s,
                    )
                    os.kill(pid, signal.SIGKILL)
                self.store.update_job(job["id"], worker_pid=None)


def _alive(pid: int | None) -> bool:
    """True when ``pid`` runs (a zombie, e.g. an orphan that no init reaps, counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the server dies, so a killed server never leaves a trainer behind."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --------------------------------------------------------------------------- worker (its own process)


def worker_main(data_dir: Path, overrides: list[str], poll_s: float = 0.2) -> None:
    store = Store(Path(data_dir) / "tunesmith.db")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set():
        job = store.claim_job(os.getpid())
        if job is None:
            stopping.wait(poll_s)
            continue
        try:
            run_job(store, job, Path(data_dir), overrides, stopping)
        except Exception as exc:  # noqa: BLE001 - a failed job must not kill the worker
            log.exception("job %s failed", job["id"])
            _fail(store, job["id"], "internal_error", f"Training failed: {type(exc).__name__}: {exc}")


def run_job(
    store: Store, job: dict[str, Any], data_dir: Path, overrides: list[str], stopping: threading.Event
) -> None:
    """Validate (first attempt), train (resuming when a run folder exists), publish the model."""
    from tunesmith.errors import TunesmithError

    job_id = job["id"]
    flags = {"stop": False}
    beat = threading.Thread(target=_heartbeat, args=(store, job_id, flags, stopping), daemon=True)
    beat.start()
    try:
        try:
            cfg = job_config(job, data_dir, overrides)
        except JobInputError as exc:
            _fail(store, job_id, exc.code, exc.message, exc.param)
            return
        except TunesmithError as exc:
            _fail(store, job_id, "invalid_training_file", exc.message, "training_file")
            return
        if job["attempt"] == 1:
            store.add_event(job_id, "Files validated, training starts")
        run_dir = Path(cfg.train.output_dir) / str(cfg.train.run_name)
        store.update_job(job_id, run_dir=str(run_dir))
        resume = _resume_point(run_dir)
        last: dict[str, Any] = {}

        def on_progress(event: dict[str, Any]) -> None:
            kind, step = event.get("event"), int(event.get("step") or 0)
            if kind == "start":
                store.update_job(job_id, total_steps=event.get("total_steps"))
            elif kind == "step" and event.get("loss") is not None:
                last.update(step=step, train_loss=float(event["loss"]))
                data = {
                    "step": step,
                    "train_loss": float(event["loss"]),
                    "total_steps": event.get("total_steps"),
                }
                message = f"Step {step}/{event.get('total_steps')}: training loss={float(event['loss']):.4f}"
                if event.get("reward") is not None:  # reinforcement: the mean grade of the step's samples
                    data["train_mean_reward"] = float(event["reward"])
                    message += f", mean reward={float(event['reward']):.4f}"
                    if event.get("kl") is not None:
                        data["kl"] = float(event["kl"])
                store.add_event(job_id, message, data=data, type_="metrics")
                if event.get("tokens_trained") is not None:
                    store.update_job(job_id, trained_tokens=int(event["tokens_trained"]))
            elif kind == "eval" and event.get("val_loss") is not None:
                store.add_event(
                    job_id,
                    f"Step {step}: validation loss={float(event['val_loss']):.4f}",
                    data={"step": step, "valid_loss": float(event["val_loss"])},
                    type_="metrics",
                )
                last["valid_loss"] = float(event["val_loss"])
            elif kind == "checkpoint" and event.get("path"):
                metrics = {
                    "step": step,
                    **{k: v for k, v in last.items() if k != "step" and last.get("step") == step},
                }
                store.add_checkpoint(
                    job_id, step, str(event["path"]), metrics, f"{model_name(job)}:ckpt-step-{step}"
                )

        try:
            result = _train(cfg, resume, on_progress, lambda: flags["stop"] or stopping.is_set())
        except TunesmithError as exc:  # e.g. the training's divergence guard: a failed job, no model
            _fail_unpublished(
                store, job_id, "training_failed", exc.message + (f" {exc.hint}" if exc.hint else "")
            )
            return
        state = store.get_job(job_id) or {}
        if state.get("status") != "running":  # cancelled or paused while stopping: leave it so
            store.update_job(job_id, worker_pid=None)
            return
        if stopping.is_set():
            return  # server shutting down: stay 'running' so the next start re-queues and resumes
        bad = _nonfinite_loss(last, getattr(result, "summary", None))
        if bad:  # a run that trained on NaN/inf publishes nothing, whatever the training loop decided
            _fail_unpublished(store, job_id, "training_diverged", bad)
            return
        name = model_name(job)
        tokens = result.summary.tokens_trained or (store.get_job(job_id) or {}).get("trained_tokens") or 0
        store.transition(
            job_id,
            ("running",),
            event=[f"New fine-tuned model created: {name}", "The job has successfully completed"],
            status="succeeded",
            fine_tuned_model=name,
            finished_at=int(time.time()),
            trained_tokens=int(tokens),
            run_dir=str(result.run_dir),
            worker_pid=None,
        )
    finally:
        flags["stop"] = True


def _heartbeat(store: Store, job_id: str, flags: dict, stopping: threading.Event) -> None:
    while not flags.get("stop"):
        try:
            state = store.heartbeat(job_id)
            if state["cancel_requested"] or state["pause_requested"] or state["status"] != "running":
                flags["stop"] = True
                return
        except Exception:  # noqa: BLE001 - a locked DB for a second is not fatal
            pass
        stopping.wait(0.5)


def _train(cfg: Any, resume: Path | None, on_progress: Any, should_stop: Any) -> Any:
    """The training engine's entry point (``train.api.train``; ``train.sft.run`` until the api lands)."""
    try:
        from tunesmith.train.api import train
    except ImportError:
        from tunesmith.train.sft import run as train
    return train(cfg, resume=resume, on_progress=on_progress, should_stop=should_stop)


def _resume_point(run_dir: Path) -> Path | None:
    """The run folder when it holds a complete (recorded) checkpoint; a folder from a run killed before
    its first checkpoint holds nothing worth keeping and is removed so the job can start afresh."""
    import shutil

    from tunesmith.train.checkpoints import latest_checkpoint

    if not run_dir.exists():
        return None
    if latest_checkpoint(run_dir / "checkpoints") is not None:
        return run_dir
    shutil.rmtree(run_dir)
    return None


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {}


def _fail(store: Store, job_id: str, code: str, message: str, param: str | None = None) -> None:
    err = json.dumps({"code": code, "message": message, "param": param})
    if store.transition(
        job_id,
        ("running", "validating_files", "queued"),
        status="failed",
        error=err,
        finished_at=int(time.time()),
        worker_pid=None,
    ):
        store.add_event(job_id, f"Job failed: {message}", "error")


def _nonfinite_loss(last: dict[str, Any], summary: Any) -> str | None:
    """Why a finished run diverged (a non-finite training/validation loss), or None."""
    import math

    seen = dict(last)
    summary = _as_dict(summary)
    for key in ("final_train_loss", "final_val_loss", "best_val_loss"):
        if isinstance(summary.get(key), int | float):
            seen[key] = summary[key]
    for key, value in seen.items():
        if key != "step" and isinstance(value, int | float) and not math.isfinite(value):
            return (
                f"Training diverged: {key} is {value} (step {last.get('step', '?')}); no model was published. "
                "Lower learning_rate_multiplier or check the training data."
            )
    return None


def _fail_unpublished(store: Store, job_id: str, code: str, message: str) -> None:
    """Fail the job and withdraw every checkpoint model it recorded (their weights are not trustworthy)."""
    _fail(store, job_id, code, message, None)
    for c in store.list_checkpoints(job_id, None, 10_000)[0]:
        store.delete_model(c["model_name"])


def model_name(job: dict[str, Any]) -> str:
    """``ft:{base}:{org}:{suffix}:{id}``, OpenAI's shape (the base keeps its '/'; routes accept it)."""
    return f"ft:{job['model']}:local:{job['suffix'] or ''}:{job['id'].removeprefix('ftjob-')[:8]}"


# --------------------------------------------------------------------------- job -> training config


def job_config(job: dict[str, Any], data_dir: Path, overrides: list[str]) -> Any:
    """The ProjectConfig for a job: data checked here (>= 10 valid examples), hyperparameters mapped."""
    from tunesmith.config import load_config, overrides_for
    from tunesmith.data.formats import load_data

    method = json.loads(job["method"])
    if method["type"] == "reinforcement":
        return _reinforcement_config(job, method, data_dir, overrides)
    task = "preference" if method["type"] == "dpo" else "chat"
    store = Store(data_dir / "tunesmith.db")
    paths = {}
    for param in ("training_file", "validation_file"):
        fid = job[param]
        if not fid:
            continue
        row = store.get_file(fid)
        if row is None:
            raise JobInputError(
                "invalid_training_file", f"{param} {fid} was deleted before the job started.", param
            )
        path = file_path(data_dir, fid)
        loaded = load_data(path, task)
        if loaded.errors:
            e = loaded.errors[0]
            more = f" [{len(loaded.errors) - 1} more problem(s)]" if len(loaded.errors) > 1 else ""
            raise JobInputError(
                "invalid_file_format",
                f"Invalid file format in {param} {fid}. Example {e.line}: {e.message} ({e.hint}){more}",
                param,
            )
        if param == "training_file" and len(loaded.records) < MIN_EXAMPLES:
            raise JobInputError(
                "invalid_n_examples",
                f"Training file has {len(loaded.records)} example(s), but must "
                f"have at least {MIN_EXAMPLES} examples",
            )
        paths[param] = path
    hyper = json.loads(job["hyperparameters"])
    items = [
        f"model.name={job['model']}",
        f"data.train={paths['training_file']}",
        f"data.task={task}",
        f"train.method={'dpo' if task == 'preference' else 'sft'}",
        f"train.seed={job['seed']}",
        f"data.seed={job['seed']}",
        f"train.output_dir={data_dir / 'runs'}",
        f"train.run_name={job['id']}",
    ]
    if "validation_file" in paths:
        items.append(f"data.holdout={paths['validation_file']}")
    if hyper["n_epochs"] != "auto":
        items.append(f"train.epochs={hyper['n_epochs']}")
    if hyper["batch_size"] != "auto":
        items.append(f"train.batch_size={hyper['batch_size']}")
    if hyper.get("beta", "auto") != "auto":
        items.append(f"train.beta={hyper['beta']}")
    # the server's --train-override apply to every job: each job takes those its method reads
    cfg = load_config(None, items + overrides_for("dpo" if task == "preference" else "sft", list(overrides)))
    return _apply_lr_multiplier(cfg, hyper)


def _reinforcement_config(
    job: dict[str, Any], method: dict[str, Any], data_dir: Path, overrides: list[str]
) -> Any:
    """OpenAI's reinforcement method as ``method: grpo`` (TRL's GRPOTrainer, train/grpo.py): the training
    file's prompts (rows: ``messages`` ending in a user turn, plus fields the grader reads as ``item``), the
    job's grader written beside the runs as a grader file, n_epochs / batch_size (sampled answers per step) /
    beta (KL coefficient) / learning_rate_multiplier mapped as for the other methods."""
    from tunesmith.config import load_config, overrides_for
    from tunesmith.errors import TunesmithError
    from tunesmith.train.rl_common import load_prompt_rows

    store = Store(data_dir / "tunesmith.db")
    fid = job["training_file"]
    if store.get_file(fid) is None:
        raise JobInputError(
            "invalid_training_file", f"training_file {fid} was deleted before the job started."
        )
    path = file_path(data_dir, fid)
    try:
        n = len(load_prompt_rows(path))
    except TunesmithError as exc:
        raise JobInputError(
            "invalid_file_format", f"Invalid file format in training_file {fid}: {exc.message}"
        ) from None
    if n < MIN_EXAMPLES:
        raise JobInputError(
            "invalid_n_examples", f"Training file has {n} prompt(s), but must have at least {MIN_EXAMPLES}"
        )
    grader = Path(data_dir) / "graders" / f"{job['id']}.json"
    grader.parent.mkdir(parents=True, exist_ok=True)
    grader.write_text(json.dumps(method["reinforcement"]["grader"]), encoding="utf-8")
    hyper = json.loads(job["hyperparameters"])
    items = [
        f"model.name={job['model']}",
        f"train.prompts={path}",
        "train.method=grpo",
        f"train.grader={grader}",
        f"train.seed={job['seed']}",
        f"data.seed={job['seed']}",
        f"train.output_dir={data_dir / 'runs'}",
        f"train.run_name={job['id']}",
    ]
    for name, key in (("n_epochs", "epochs"), ("batch_size", "batch_size"), ("beta", "beta")):
        if hyper.get(name, "auto") != "auto":
            items.append(f"train.{key}={hyper[name]}")
    return _apply_lr_multiplier(load_config(None, items + overrides_for("grpo", list(overrides))), hyper)


def _apply_lr_multiplier(cfg: Any, hyper: dict[str, Any]) -> Any:
    if hyper["learning_rate_multiplier"] != "auto":
        lr = cfg.train.resolved_lr() * float(hyper["learning_rate_multiplier"])
        if not 0 < lr <= 1:  # the multiplier is bounded at the request; the product must be a sane lr too
            raise JobInputError(
                "invalid_hyperparameters",
                f"learning_rate_multiplier {hyper['learning_rate_multiplier']} gives a learning rate of {lr:g} "
                f"(default {cfg.train.resolved_lr():g}); it must be in (0, 1].",
                "hyperparameters.learning_rate_multiplier",
            )
        cfg.train.lr = lr
    return cfg


def file_path(data_dir: Path, file_id: str) -> Path:
    """Where an uploaded file lives. Ids are server-made (``file-`` + hex), re-checked here so that no
    id can ever name a path outside ``data_dir/files``."""
    if not (file_id.startswith("file-") and file_id[5:].isalnum() and file_id[5:].isascii()):
        raise ValueError(f"not a file id: {file_id!r}")
    return Path(data_dir) / "files" / f"{file_id}.jsonl"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="tunesmith fine-tuning worker (started by `tunesmith serve`).")
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--override", action="append", default=[])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    worker_main(args.data_dir, args.override)


if __name__ == "__main__":
    main()
