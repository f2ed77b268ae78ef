"""Training safety on the tiny model: damaged checkpoints on resume (case resume-corrupt-last-checkpoint)
and the divergence guard (the training half of case job-infinite-lr-succeeds)."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tunesmith.config import ProjectConfig, load_config
from tunesmith.errors import TunesmithError
from tunesmith.train import checkpoints as ckpt
from tunesmith.train.api import train
from tunesmith.train.divergence import TrainingDiverged
from tunesmith.train.registry import RunRegistry

pytestmark = pytest.mark.integration

CASES = Path(__file__).parents[2] / "assets" / "cases"
RESUME_CASE = CASES / "resume-corrupt-last-checkpoint"
INF_LR_CASE = CASES / "job-infinite-lr-succeeds"


def _case_cfg(runs: Path, *overrides: str) -> ProjectConfig:
    """The case's config (tiny model, LoRA, save_every, run_name victim), shortened to 5 steps."""
    return load_config(
        RESUME_CASE / "cfg.yaml",
        [
            f"data.train={RESUME_CASE / 'train.jsonl'}",
            f"train.output_dir={runs}",
            "train.max_steps=5",
            "train.save_every=1",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The case's run after checkpoints step-1..3 are recorded (stopped there, as a kill would leave it)."""
    runs = tmp_path_factory.mktemp("victim") / "runs"
    steps: list[int] = []
    result = train(
        _case_cfg(runs),
        on_progress=lambda e: steps.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: len(steps) >= 3,
    )
    assert result.status == "stopped"
    names = [p.name for p in ckpt.list_checkpoints(result.run_dir / "checkpoints")]
    assert names == ["step-00000001", "step-00000002", "step-00000003"]
    return runs


def _truncate(path: Path, size: int | None = None) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size if size is not None else path.stat().st_size // 2)


# the case's five damage kinds: (file named in the finding, how it is damaged)
DAMAGES = {
    "truncated_weights": ("trainable.safetensors", lambda d: _truncate(d / "trainable.safetensors")),
    "missing_weights": ("trainable.safetensors", lambda d: (d / "trainable.safetensors").unlink()),
    "missing_optimizer": ("optimizer.pt", lambda d: (d / "optimizer.pt").unlink()),
    "truncated_optimizer": ("optimizer.pt", lambda d: _truncate(d / "optimizer.pt", 100)),
    "broken_state": ("state.json", lambda d: (d / "state.json").write_text('{"step": \n')),
}


def _copy(victim: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(victim, runs)
    return runs


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_resume_falls_back_to_the_newest_intact_checkpoint(victim: Path, tmp_path: Path, kind: str) -> None:
    runs = _copy(victim, tmp_path)
    run_dir = runs / "victim"
    name, damage = DAMAGES[kind]
    damage(run_dir / "checkpoints" / "step-00000003")
    events: list[dict] = []
    resumed = train(_case_cfg(runs), resume=run_dir, on_progress=events.append)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert resumed.status == summary["status"] == "completed" and summary["steps"] == 5
    assert summary["resumed_from"].endswith("step-00000002")
    skipped = [e for e in events if e["event"] == "checkpoint_skipped"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("step-00000003") and skipped[0]["file"] == name
    assert name in skipped[0]["reason"] and skipped[0]["resume_from"].endswith("step-00000002")
    assert RunRegistry(runs).get("victim").status == "completed"  # nothing marked failed on the way
    # the resumed run re-saved step 3 (intact now), and every recorded checkpoint verifies
    assert all(ckpt.verify_checkpoint(p) is None for p in ckpt.list_checkpoints(run_dir / "checkpoints"))


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "legacy"])
@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_every_damage_kind_is_found(victim: Path, tmp_path: Path, kind: str, with_manifest: bool) -> None:
    root = _copy(victim, tmp_path) / "victim" / "checkpoints"
    assert all(ckpt.verify_checkpoint(p) is None for p in ckpt.list_checkpoints(root))
    if not with_manifest:  # checkpoints saved before manifests existed are checked for structure
        for m in root.glob(f"step-*/{ckpt.MANIFEST}"):
            m.unlink()
        assert all(ckpt.verify_checkpoint(p) is None for p in ckpt.list_checkpoints(root))
    name, damage = DAMAGES[kind]
    damage(root / "step-00000003")
    found, skipped = ckpt.newest_intact_checkpoint(root)
    assert found is not None and found.name == "step-00000002"
    assert [(d.checkpoint.name, d.file) for d in skipped] == [("step-00000003", name)]


def test_flipped_byte_is_found_by_the_checksum(victim: Path, tmp_path: Path) -> None:
    root = _copy(victim, tmp_path) / "victim" / "checkpoints"
    weights = root / "step-00000003" / "trainable.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0xFF  # same size, still a valid safetensors file: only the sha256 can tell
    weights.write_bytes(bytes(raw))
    damage = ckpt.verify_checkpoint(root / "step-00000003")
    assert damage is not None and damage.file == "trainable.safetensors" and "sha256" in damage.reason


def test_no_intact_checkpoint_is_one_clear_error_and_leaves_the_run_alone(
    victim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _copy(victim, tmp_path)
    run_dir = runs / "victim"
    for p in ckpt.list_checkpoints(run_dir / "checkpoints"):
        _truncate(p / "trainable.safetensors")
    summary_before = (run_dir / "summary.json").read_bytes()
    status_before = RunRegistry(runs).get("victim").status

    from tunesmith.cli.main import main

    monkeypatch.setattr(
        sys,
        "argv",
        ["tunesmith", "train", str(RESUME_CASE / "cfg.yaml"), f"data.train={RESUME_CASE / 'train.jsonl'}",
         f"train.output_dir={runs}", "train.max_steps=5", "train.save_every=1", "--resume", str(run_dir)],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert "Traceback" not in out + err
    assert "no checkpoint is intact" in out + err
    assert "step-00000003/trainable.safetensors is truncated" in (out + err).replace("\n", "")
    assert (run_dir / "summary.json").read_bytes() == summary_before
    assert RunRegistry(runs).get("victim").status == status_before
    with pytest.raises(TunesmithError, match=r"and 2 older checkpoint\(s\) are damaged too"):
        train(_case_cfg(runs), resume=run_dir)


# --------------------------------------------------------------------------- divergence


def _finite_checkpoints(run_dir: Path) -> list[str]:
    from safetensors.torch import load_file

    names = []
    for p in ckpt.list_checkpoints(run_dir / "checkpoints"):
        assert ckpt.verify_checkpoint(p) is None
        assert all(
            bool(torch.isfinite(t).all()) for t in load_file(str(p / "trainable.safetensors")).values()
        )
        names.append(p.name)
    return names


def test_infinite_lr_run_ends_failed_not_completed(tmp_path: Path) -> None:
    # the case's job: learning_rate_multiplier 1e999 made lr inf (config bounds now refuse that before a
    # run starts; here it is injected past them, as any other way to NaN would arrive)
    cfg = load_config(
        None,
        ["model.name=tiny", f"data.train={INF_LR_CASE / 'train.jsonl'}", "data.max_seq_len=64",
         "train.max_steps=6", "train.save_every=1", f"train.output_dir={tmp_path / 'runs'}", "train.run_name=inf"],
    )  # fmt: skip
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": math.inf})})
    with pytest.raises(TrainingDiverged) as info:
        train(cfg)
    err = info.value
    assert 1 <= err.step <= 6 and "train.lr" in (err.hint or "")
    run_dir = tmp_path / "runs" / "inf"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith(f"diverged at step {err.step}:")
    assert not (run_dir / "adapter").exists() and not (run_dir / "model").exists()  # no NaN weights saved
    _finite_checkpoints(run_dir)  # whatever was saved before the divergence is finite
    assert RunRegistry(tmp_path / "runs").get("inf").status == "failed"


def test_nan_at_step_3_keeps_the_step_2_checkpoint(tmp_path: Path) -> None:
    """A weight turned NaN during step 3 (the loop's view of a diverging update): the run stops at step 3,
    the step-2 checkpoint is the last one and is finite, and nothing of step 3 is saved."""
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.adapters import build_trainable, trainable_state
    from tunesmith.train.data import prepare_data
    from tunesmith.train.loop import fit
    from tunesmith.train.runs import create_run

    cfg = _case_cfg(tmp_path / "runs", "train.run_name=nan")
    data = prepare_data(cfg, load_tokenizer(cfg.model.name))
    model = build_trainable(cfg)
    run = create_run(cfg)

    def inject(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 3:
            with torch.no_grad():
                next(iter(trainable_state(model).values())).view(-1)[0] = math.nan

    with pytest.raises(TrainingDiverged) as info:
        fit(model, data.train, data.holdout, cfg, run, on_progress=inject)
    assert info.value.step == 3 and info.value.last_good is not None
    assert info.value.last_good.name == "step-00000002"
    assert _finite_checkpoints(run.run_dir) == ["step-00000001", "step-00000002"]
    assert "step-00000002" in info.value.message and "nothing after it was saved" in info.value.message


def test_case_noend_template_trains_with_force(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The refusal itself (exit 1, nothing written) is tests/unit/train/test_train_template_refusal.py."""
    noend = CASES / "noend-template"
    model = tmp_path / "tiny-noend"
    shutil.copytree(tiny_model_dir, model)
    shutil.copy(noend / "chat_template.jinja", model / "chat_template.jinja")
    cfg = load_config(
        noend / "cfg.yaml",
        [f"model.name={model}", f"data.train={noend / 'chat12_nosys.jsonl'}", f"train.output_dir={tmp_path}"],
    )
    with pytest.raises(TunesmithError, match="eos_not_trained"):
        train(cfg)
    assert train(cfg, force=True).status == "completed"
