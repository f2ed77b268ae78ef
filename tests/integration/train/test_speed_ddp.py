"""`--nproc 2` (DDP over gloo, two real processes through torchrun) trains the same loss curve as one process
with the same global batch (accumulation 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.integration


def _write_data(folder: Path) -> tuple[Path, Path]:
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(40):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        words = " ".join(["yes"] * rng.randint(1, 6))
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"{a} + {b} {words}"},
                    {"role": "assistant", "content": f"{a + b} {words}"},
                ]
            }
        )
    train, hold = folder / "train.jsonl", folder / "holdout.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    hold.write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return train, hold


def _config(folder: Path, model_dir: Path) -> Path:
    train, hold = _write_data(folder)
    cfg = folder / "cfg.yaml"
    cfg.write_text(
        f"model: {{name: '{model_dir}'}}\n"
        f"data: {{train: '{train}', holdout: '{hold}'}}\n"
        "train: {finetune: lora, lr: 0.01, max_steps: 4, batch_tokens: 48, packing: true, logging_steps: 1, "
        f"eval_every: 2, warmup_ratio: 0.0, seed: 3, output_dir: '{folder / 'runs'}'}}\n"
    )
    return cfg


def _losses(run_dir: Path) -> tuple[list[float], list[float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [r["loss"] for r in rows if "loss" in r]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    return train, val


def test_two_processes_match_one_with_same_global_batch(toy_model_dir, tmp_path):
    from tunesmith.config import load_config
    from tunesmith.train.api import train
    from tunesmith.train.distributed import launch

    cfg_path = _config(tmp_path, toy_model_dir)
    events: list[dict] = []
    two = launch(cfg_path, ["train.grad_accum=1", "train.run_name=two"], 2, on_progress=events.append)
    one = train(load_config(cfg_path, ["train.grad_accum=2", "train.run_name=one"]))
    assert two.summary.status == "completed" and two.summary.steps == 4
    assert [e["step"] for e in events if e.get("event") == "step"] == [
        1,
        2,
        3,
        4,
    ]  # progress reached the launcher
    t2, v2 = _losses(two.run_dir)
    t1, v1 = _losses(one.run_dir)
    assert len(t2) == len(t1) == 4 and len(v2) == len(v1) >= 2
    assert t1[-1] < t1[0]  # it learns, so the comparison is about a moving curve
    assert t2 == pytest.approx(t1, rel=1e-4)
    assert v2 == pytest.approx(v1, rel=1e-4)
    assert two.summary.tokens_trained * 2 == pytest.approx(
        one.summary.tokens_trained, rel=0.2
    )  # rank 0's share


def test_launch_reports_worker_errors_clearly(toy_model_dir, tmp_path):
    from tunesmith.train.distributed import launch

    cfg_path = _config(tmp_path, toy_model_dir)
    (tmp_path / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(TunesmithError) as info:
        launch(cfg_path, [], 2)
    assert "--nproc 2 failed" in info.value.message and "train.jsonl" in info.value.message
    with pytest.raises(TunesmithError, match="--nproc must be at least 1"):
        launch(cfg_path, [], 0)
