"""What `tunesmith train` prints at the end of a run: a stopped run is told how to continue only where its
method can resume; a method that refuses --resume (it used to be suggested to DPO users) must not be told to
use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tunesmith.cli.train_cmd import _print_result
from tunesmith.results.run import DpoExtras, LoopExtras, RunSummary
from tunesmith.train.runs import RunResult

pytestmark = pytest.mark.unit


def _printed(summary: RunSummary) -> str:
    console = Console(record=True, width=200)
    _print_result(console, RunResult(Path("runs/r1"), summary), Path("cfg.yaml"))
    return console.export_text()


def test_a_stopped_sft_run_is_told_to_resume() -> None:
    s = RunSummary(run_id="r1", method="sft", status="stopped", steps=3, final_train_loss=1.25,
                   extras=LoopExtras(method="sft"))  # fmt: skip
    out = _printed(s)
    assert "continue with: tunesmith train cfg.yaml --resume runs/r1" in out
    assert "train loss: - -> 1.2500" in out


@pytest.mark.parametrize("method", ["cpt", "dpo", "reward", "ppo", "rloo", "grpo"])
def test_the_stop_hint_matches_what_the_method_can_do(method: str) -> None:
    """The hint follows ``supports_resume`` (train/runs.py), the same list training checks: a method that
    can resume is told how; one that cannot is told so (and resuming it is refused)."""
    from tunesmith.config import load_config
    from tunesmith.errors import TunesmithError
    from tunesmith.train.api import train
    from tunesmith.train.runs import supports_resume

    extras = {"cpt": LoopExtras(method="cpt"), "dpo": DpoExtras()}.get(method)
    s = RunSummary(run_id="r1", method=method, status="stopped", steps=3, final_train_loss=0.5, extras=extras)
    out = _printed(s)
    if supports_resume(method):
        assert "continue with: tunesmith train cfg.yaml --resume runs/r1" in out
        return
    assert "--resume" not in out
    assert f"method: {method} runs cannot be resumed" in out and "start a new run" in out
    extra = ["train.reward_model=runs/rm"] if method in ("ppo", "rloo", "grpo") else []
    cfg = load_config(None, ["model.name=tiny", f"train.method={method}", *extra])
    with pytest.raises(TunesmithError, match="cannot be resumed"):
        train(cfg, resume=Path("runs/r1"))
