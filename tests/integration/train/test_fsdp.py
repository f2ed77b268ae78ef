"""`train.distributed: fsdp` (FSDP2 through torchrun, gloo, two real CPU processes): the same loss curve as
one process within 1e-4, one checkpoint per step written in the one-process format (whole tensors, rank 0),
and a resume with another process count, 2 -> 1 and 1 -> 2, continuing the same curve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TOL = 1e-4


def _config(folder: Path, model_dir: Path) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Is {w} a fruit?"},
                {"role": "assistant", "content": "yes" if fruit else "no"},
            ]
        }
        for w, fruit in [("apple", 1), ("car", 0), ("pear", 1), ("chair", 0)] * 4
    ]
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hold = folder / "holdout.jsonl"
    hold.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    cfg = folder / "cfg.yaml"
    cfg.write_text(
        f"model: {{name: '{model_dir}'}}\n"
        f"data: {{train: '{train}', holdout: '{hold}'}}\n"
        "lora: {r: 8}\n"
        "train: {finetune: lora, distributed: fsdp, lr: 0.03, max_steps: 4, batch_size: 4, save_every: 2, "
        f"eval_every: 2, warmup_ratio: 0.0, seed: 3, output_dir: '{folder / 'runs'}'}}\n"
    )
    return cfg


def _curve(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    train, val = {}, {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            train[row["step"]] = row["loss"]  # a resumed step overwrites the row logged before
        if "val_loss" in row:
            val[row["step"]] = row["val_loss"]
    return train, val


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _same_curve(run_dir: Path, reference: tuple[dict, dict]) -> None:
    train, val = _curve(run_dir)
    assert sorted(train) == sorted(reference[0]) == [1, 2, 3, 4]
    assert sorted(val) == sorted(reference[1])
    for step in train:
        assert train[step] == pytest.approx(reference[0][step], rel=TOL), f"step {step}"
    for step in val:
        assert val[step] == pytest.approx(reference[1][step], rel=TOL), f"val at step {step}"


def _drop_last_checkpoint(run_dir: Path) -> None:
    # what a crash right after the step-2 checkpoint leaves: the step-4 one never written
    shutil.rmtree(run_dir / "checkpoints" / "step-00000004")


def test_fsdp_matches_one_process_and_resumes_with_another_process_count(toy_model_dir, tmp_path):
    import torch

    from tunesmith.config import load_config
    from tunesmith.train.api import train
    from tunesmith.train.distributed import launch

    cfg_path = _config(tmp_path, toy_model_dir)
    one = train(load_config(cfg_path, ["train.run_name=one"]))
    two = launch(cfg_path, ["train.run_name=two"], 2)
    reference = _curve(one.run_dir)
    assert reference[0][4] < reference[0][1]  # it learns, so the comparison is about a moving curve

    # the plan chose FSDP for two processes; one process ignores train.distributed
    assert two.summary.extras.plan.memory.distributed == "fsdp"
    assert one.summary.extras.plan.memory.distributed == "single"
    assert two.summary.status == "completed" and two.summary.steps == 4
    _same_curve(two.run_dir, reference)

    # one checkpoint per step, whole tensors in the one-process format (not a shard per rank)
    for step in ("step-00000002", "step-00000004"):
        ckpt_two, ckpt_one = two.run_dir / "checkpoints" / step, one.run_dir / "checkpoints" / step
        assert sorted(p.name for p in ckpt_two.iterdir()) == sorted(p.name for p in ckpt_one.iterdir())
        w2, w1 = _tensors(ckpt_two / "trainable.safetensors"), _tensors(ckpt_one / "trainable.safetensors")
        assert sorted(w2) == sorted(w1)
        for name in w1:
            assert w2[name].shape == w1[name].shape
            torch.testing.assert_close(w2[name], w1[name], rtol=TOL, atol=1e-6)
        o2 = torch.load(ckpt_two / "optimizer.pt", weights_only=False)["state"]
        o1 = torch.load(ckpt_one / "optimizer.pt", weights_only=False)["state"]
        assert sorted(o2) == sorted(o1)
        for idx in o1:
            assert type(o2[idx]["exp_avg"]) is torch.Tensor  # gathered, not a DTensor shard
            torch.testing.assert_close(o2[idx]["exp_avg_sq"], o1[idx]["exp_avg_sq"], rtol=1e-3, atol=1e-9)
    # the final adapter is whole and equal to the one-process adapter
    a2 = _tensors(two.run_dir / "adapter" / "adapter_model.safetensors")
    a1 = _tensors(one.run_dir / "adapter" / "adapter_model.safetensors")
    assert sorted(a2) == sorted(a1)
    for name in a1:
        torch.testing.assert_close(a2[name], a1[name], rtol=TOL, atol=1e-6)

    # 2 -> 1: the two-process run resumed from its step-2 checkpoint by one process
    _drop_last_checkpoint(two.run_dir)
    resumed = train(load_config(cfg_path), resume=two.run_dir)
    assert resumed.summary.resumed_from.endswith("step-00000002") and resumed.summary.steps == 4
    _same_curve(two.run_dir, reference)

    # 1 -> 2: the one-process run resumed from its step-2 checkpoint by two FSDP processes
    _drop_last_checkpoint(one.run_dir)
    resumed = launch(cfg_path, [], 2, resume=one.run_dir)
    assert resumed.summary.resumed_from.endswith("step-00000002") and resumed.summary.steps == 4
    assert resumed.summary.extras.plan.memory.distributed == "fsdp"
    _same_curve(one.run_dir, reference)
