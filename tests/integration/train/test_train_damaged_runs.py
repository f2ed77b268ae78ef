"""Damaged run folders never produce a traceback (hypothesis): a real tiny run folder (stopped after step 2
of 3, a checkpoint per step, adapter saved, registered) gets random files truncated, deleted, emptied or
overwritten with garbage, and every command that reads run folders (`train --resume`, `runs list`,
`runs show`) either works or ends with a clear error (exit 1 or 2), never an uncaught exception."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.train.api import train

pytestmark = pytest.mark.integration

CASE = Path(__file__).parents[2] / "assets" / "cases" / "resume-corrupt-last-checkpoint"
OVERRIDES = [f"data.train={CASE / 'train.jsonl'}", "train.max_steps=3", "train.save_every=1"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("pristine") / "runs"
    steps: list[int] = []
    result = train(
        load_config(CASE / "cfg.yaml", [*OVERRIDES, f"train.output_dir={runs}"]),
        on_progress=lambda e: steps.append(1) if e["event"] == "step" else None,
        should_stop=lambda: len(steps) >= 2,
    )
    assert result.status == "stopped" and (result.run_dir / "adapter").is_dir()
    assert all((runs / f).is_file() for f in FILES), [f for f in FILES if not (runs / f).is_file()]
    return runs


CKPT = "victim/checkpoints/step-0000000"
# every file a command may read: the registry, the run's own files, the final adapter, both checkpoints
FILES = [
    "registry.sqlite",
    "victim/config.resolved.yaml",
    "victim/metrics.jsonl",
    "victim/summary.json",
    "victim/adapter/adapter_config.json",
    "victim/adapter/adapter_model.safetensors",
    "victim/checkpoints/index.json",
    *(f"{CKPT}{step}/{name}" for step in (1, 2) for name in (
        "trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json", "manifest.json")),
]  # fmt: skip

DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(FILES),
        st.sampled_from(["truncate", "delete", "empty", "garbage", "bad_json", "dir_gone"]),
        st.floats(0, 1),  # where to truncate
        st.binary(min_size=1, max_size=48),  # garbage
    ),
    min_size=1,
    max_size=3,
)


def _damage(runs: Path, ops: list[tuple]) -> None:
    for name, kind, cut, junk in ops:
        path = runs / name
        if not path.exists():
            continue
        if kind == "truncate":
            with open(path, "r+b") as fh:
                fh.truncate(int(path.stat().st_size * cut))
        elif kind == "delete":
            path.unlink()
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(junk)
        elif kind == "bad_json":
            path.write_text('{"step": [1, {"dir": "../..", "checkpoints": 3}')
        elif kind == "dir_gone":
            shutil.rmtree(path.parent, ignore_errors=True)


def _run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["tunesmith", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(ops=DAMAGE)
@example(ops=[("registry.sqlite", "garbage", 0.0, b"not a database")])
@example(ops=[("victim/checkpoints/index.json", "garbage", 0.0, b"\xff\xfe\x00")])
@example(ops=[("victim/config.resolved.yaml", "garbage", 0.0, b"\x89PNG")])
@example(
    ops=[
        (f"{CKPT}2/state.json", "bad_json", 0, b"x"),
        (f"{CKPT}1/trainable.safetensors", "truncate", 0.5, b"x"),
    ]
)
@example(ops=[("victim/summary.json", "garbage", 0.0, b"{")])
def test_damaged_run_folders_never_give_a_traceback(
    pristine: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, ops: list[tuple]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        shutil.copytree(pristine, runs)
        _damage(runs, ops)
        run_dir = runs / "victim"
        assert _run(capsys, monkeypatch, "runs", "list", "--dir", str(runs)) in (0, 1)
        assert _run(capsys, monkeypatch, "runs", "show", "victim", "--dir", str(runs)) in (0, 1)
        cfg = ["train", str(CASE / "cfg.yaml"), *OVERRIDES, f"train.output_dir={runs}"]
        assert _run(capsys, monkeypatch, *cfg, "--resume", str(run_dir)) in (0, 1)
