"""Resume: 2N straight steps == N steps, kill -9, resume, N steps (and == a should_stop + resume), with the
same data order, optimizer, scheduler and RNG state. Tolerance: 1e-4 relative on every step's loss
(in practice the trajectories are bit-identical on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from train_toy import toy_config

from tunesmith.errors import TunesmithError
from tunesmith.train.api import train
from tunesmith.train.checkpoints import latest_checkpoint
from tunesmith.train.registry import RunRegistry

pytestmark = pytest.mark.integration

N = 4
TOL = 1e-4


def _losses(run_dir: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            out[row["step"]] = row["loss"]  # a resumed step overwrites the row logged before the kill
    return out


def test_resume_matches_uninterrupted_run(tmp_path: Path, toy_model_dir: Path) -> None:
    # dropout on, so the restored RNG state matters; 2N steps cross an epoch boundary
    common = ("train.max_steps=8", f"train.save_every={N}", "lora.lora_dropout=0.1")
    straight = train(toy_config(tmp_path, toy_model_dir, "lora", *common, "train.run_name=straight"))
    assert straight.summary.epochs_completed >= 1

    # N steps, then a real SIGKILL in the middle of step N+1's bookkeeping (no cleanup of any kind)
    killed_cfg = toy_config(tmp_path, toy_model_dir, "lora", *common, "train.run_name=killed")
    cfg_file = tmp_path / "killed.yaml"
    from tunesmith.config import dump_config

    cfg_file.write_text(dump_config(killed_cfg))
    script = textwrap.dedent(
        f"""
        import os, signal
        from tunesmith.config import load_config
        from tunesmith.train.api import train
        def progress(e):
            if e["event"] == "step" and e["step"] == {N + 1}:
                os.kill(os.getpid(), signal.SIGKILL)
        train(load_config({str(cfg_file)!r}), on_progress=progress)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ}
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "killed"
    assert latest_checkpoint(run_dir / "checkpoints").name == f"step-{N:08d}"
    assert RunRegistry(tmp_path / "runs").get("killed").status == "running"  # what a crash leaves

    resumed = train(killed_cfg, resume=run_dir)
    assert resumed.summary.status == "completed" and resumed.summary.steps == 8
    assert resumed.summary.resumed_from.endswith(f"step-{N:08d}")
    a, b = _losses(straight.run_dir), _losses(run_dir)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=TOL), f"step {step}: {b[step]} vs {a[step]}"
    assert resumed.summary.final_val_loss == pytest.approx(straight.summary.final_val_loss, rel=TOL)
    assert RunRegistry(tmp_path / "runs").get("killed").status == "completed"

    # should_stop (Ctrl-C / cancel / pause) saves at the step it is seen, and resume continues from there
    steps: list[int] = []
    stopped = train(
        toy_config(tmp_path, toy_model_dir, "lora", *common, "train.run_name=paused"),
        on_progress=lambda e: steps.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: bool(steps) and steps[-1] == N - 1,
    )
    assert stopped.status == "stopped" and stopped.summary.steps == N - 1
    assert latest_checkpoint(stopped.run_dir / "checkpoints").name == f"step-{N - 1:08d}"
    assert (stopped.run_dir / "adapter" / "adapter_config.json").exists()  # the weights so far are usable too
    done = train(
        toy_config(tmp_path, toy_model_dir, "lora", *common, "train.run_name=paused"), resume=stopped.run_dir
    )
    assert done.summary.final_train_loss == pytest.approx(straight.summary.final_train_loss, rel=TOL)


def test_resume_refuses_changed_config_and_missing_checkpoint(tmp_path: Path, toy_model_dir: Path) -> None:
    run_dir = tmp_path / "runs" / "empty"
    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.run_name=empty")
    run_dir.mkdir(parents=True)
    from tunesmith.config import dump_config

    (run_dir / "config.resolved.yaml").write_text(dump_config(cfg))
    with pytest.raises(TunesmithError, match="no complete checkpoint"):
        train(cfg, resume=run_dir)
    changed = toy_config(tmp_path, toy_model_dir, "lora", "train.run_name=empty", "train.lr=0.5")
    with pytest.raises(TunesmithError, match=r"differs from the run's in train\.lr"):
        train(changed, resume=run_dir)


def test_resume_refuses_changed_data(tmp_path: Path, toy_model_dir: Path) -> None:
    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.run_name=r", "train.max_steps=4")
    steps: list[int] = []
    first = train(
        cfg,
        on_progress=lambda e: steps.append(1) if e["event"] == "step" else None,
        should_stop=lambda: len(steps) >= 1,
    )
    assert first.status == "stopped"
    data = tmp_path / "train.jsonl"
    data.write_text(data.read_text().replace("Is apple", "Is mango"))
    with pytest.raises(TunesmithError, match="training data changed"):
        train(cfg, resume=first.run_dir)
