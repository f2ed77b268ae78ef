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


def test_the_summary_states_one_peak_in_one_unit() -> None:
    """A real stopped run printed "peak memory 1.80 GB" (GiB) and "measured peak 1.93 GB" (10^9 bytes) for
    the same 1,886,136 KiB peak; both lines now use GB = 10^9 bytes, as the plan and estimate do."""
    from tunesmith.results.run import MemoryRecord, PlanRecord

    memory = MemoryRecord(device="cpu", budget_gb=12.9, budget_source="auto", micro_tokens=512,
                          micro_tokens_reason="speed cap (cpu)", gradient_checkpointing=False, estimate_gb=2.02,
                          measured_peak_gb=1.93)  # fmt: skip
    plan = PlanRecord(epochs=2, steps_per_epoch=35, total_steps=70, lr=5e-4, warmup_steps=5, memory=memory)
    s = RunSummary(run_id="r1", method="sft", status="stopped", steps=10, final_train_loss=1.29,
                   peak_memory_mb=1886136 / 1024, extras=LoopExtras(method="sft", plan=plan))  # fmt: skip
    out = _printed(s)
    assert "(peak memory 1.93 GB," in out and "measured peak 1.93 GB" in out
