"""`estimate --probe`: a few real training steps here, through the public training API, to calibrate.

How the calibration works (and why it can be this simple):

- The probe is the *first steps of the very run* being estimated: the same config through
  ``tunesmith.train.api.train`` with ``train.max_steps`` = 1 warm-up + N measured steps, written to a
  temporary folder. Training's data order is a pure function of (seed, epoch), so the probe's steps are
  exactly the run's first steps, and its fixed costs (loading, tokenizing, the hold-out evaluations,
  saving) are the run's fixed costs.
- Seconds per token are measured between the end of the warm-up step and the end of the last step
  (the warm-up step pays one-off costs: allocator growth, kernel selection), counting the tokens each
  step computes (padding included) from the same batches the training loop builds.
- Prediction for the whole run = the probe's wall time + the remaining steps' tokens x seconds per token
  + the extra epoch-end evaluations and checkpoint saves of the full run, each timed at the probe's end.
- The uncalibrated estimate is the analytic FLOPs / (this CPU's measured matmul peak x utilisation); its
  error against the calibrated prediction is reported, so users can see how far the table was off.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class ProbeResult:
    steps: int  # measured steps (after the warm-up step)
    probe_wall_s: float
    seconds_per_token: float
    step_tokens: list[int]  # compute tokens of every optimizer step of the full run
    boundary_s: float  # one hold-out evaluation + checkpoint save, measured at the probe's end
    boundaries_full: int  # intermediate evaluations/saves of the full run
    boundaries_probe: int

    @property
    def tokens_per_s(self) -> float:
        return 1.0 / self.seconds_per_token

    def predicted_run_s(self) -> float:
        remaining = sum(self.step_tokens[self.steps + 1 :])
        extra = max(self.boundaries_full - self.boundaries_probe, 0) * self.boundary_s
        return self.probe_wall_s + remaining * self.seconds_per_token + extra

    @property
    def setup_s(self) -> float:
        measured = sum(self.step_tokens[: self.steps + 1]) * self.seconds_per_token
        return max(self.probe_wall_s - measured - self.boundary_s, 0.0)


def probe_run(cfg: ProjectConfig, steps: int = 3) -> ProbeResult:
    """Train the first ``steps + 1`` steps of ``cfg`` in a temporary folder and time them."""
    from tunesmith.train.api import train

    if steps < 1:
        raise TunesmithError(f"--probe-steps is {steps}.", "Measure at least 1 step (3 is a good default).")
    step_tokens, per_epoch = plan_steps(cfg)
    steps = max(min(steps, len(step_tokens) - 1), 1)
    stamps: dict[int, float] = {}
    saved: list[float] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            stamps[int(event["step"])] = time.perf_counter()
        elif event.get("event") == "checkpoint":
            saved.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="tunesmith-probe-") as tmp:
        probe_cfg = cfg.model_copy(deep=True)
        probe_cfg.train.max_steps = steps + 1
        probe_cfg.train.output_dir = Path(tmp)
        probe_cfg.train.run_name = "probe"
        probe_cfg.train.report_to = []
        start = time.perf_counter()
        train(probe_cfg, on_progress=on_progress)
        wall = time.perf_counter() - start
    last = steps + 1
    if 1 not in stamps or last not in stamps:
        raise TunesmithError(
            "The probe run ended before its steps were timed.",
            "Check the data and config with `tunesmith train` first.",
        )
    spt = (stamps[last] - stamps[1]) / max(sum(step_tokens[1:last]), 1)
    after_last = [x for x in saved if x >= stamps[last]]
    boundary = (after_last[-1] - stamps[last]) if after_last else 0.0
    return ProbeResult(
        steps=steps,
        probe_wall_s=wall,
        seconds_per_token=spt,
        step_tokens=step_tokens,
        boundary_s=boundary,
        boundaries_full=_boundaries(cfg, len(step_tokens), per_epoch),
        boundaries_probe=_boundaries(cfg, last, per_epoch),
    )


def _boundaries(cfg: ProjectConfig, n_steps: int, per_epoch: int) -> int:
    """Evaluations/saves the loop makes before its final step (at epoch ends, or every eval_every steps)."""
    t = cfg.train
    if t.eval_every or t.save_every:
        every = [e for e in (t.eval_every, t.save_every) if e]
        return len({s for s in range(1, n_steps) for e in every if s % e == 0})
    return max(math.ceil(n_steps / max(per_epoch, 1)) - 1, 0)


def plan_steps(cfg: ProjectConfig) -> tuple[list[int], int]:
    """Compute tokens (padding included) of every optimizer step the run will take, built with the training
    loop's own data preparation, plan (train/plan.py) and batching, and the steps per epoch."""
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.data import prepare_data
    from tunesmith.train.loop import epoch_steps
    from tunesmith.train.packing import step_batches
    from tunesmith.train.plan import make_plan

    t = cfg.train
    data = prepare_data(cfg, load_tokenizer(cfg.model.name))
    plan = make_plan(cfg, data.train)
    total, per_epoch = plan.schedule.total_steps, plan.schedule.steps_per_epoch
    steps: list[int] = []
    epoch = 0
    while len(steps) < total:
        for step in epoch_steps(data.train, cfg, plan, epoch, 1):
            batches = step_batches(step, micro_tokens=plan.memory.micro_tokens, packing=t.packing)
            steps.append(sum(int(b.input_ids.numel()) for b in batches))
            if len(steps) >= total:
                break
        epoch += 1
    return steps, per_epoch


def calibrate(est: Any, req: Any, cfg: ProjectConfig | None = None) -> Any:
    """The estimate with this machine's row replaced by the probe's measured prediction."""
    cfg = cfg or probe_config(req)
    result = probe_run(cfg, req.probe_steps)
    predicted = result.predicted_run_s()
    cpu = next((g for g in est.gpus if g.name == "cpu"), None)
    uncal_h = cpu.hours if cpu is not None else float("nan")
    gpus = [replace(g, hours=predicted / 3600) if g.name == "cpu" else g for g in est.gpus]
    calibration = {
        "steps": result.steps,
        "tokens_per_s": result.tokens_per_s,
        "seconds_per_step": result.seconds_per_token * sum(result.step_tokens) / len(result.step_tokens),
        "setup_s": result.setup_s,
        "probe_wall_s": result.probe_wall_s,
        "run_steps": len(result.step_tokens),
        "calibrated_hours": predicted / 3600,
        "uncalibrated_hours": uncal_h,
        "uncalibrated_error_pct": 100 * (uncal_h * 3600 - predicted) / predicted,
    }
    return replace(est, gpus=gpus, calibration=calibration)


def probe_config(req: Any) -> ProjectConfig:
    """The project config of the run ``tunesmith estimate`` describes (model, method, data, epochs, rank)."""
    from tunesmith.config import validate_config_dict
    from tunesmith.models.params import BUILTIN, CLASS_ALIASES

    if req.data is None:
        raise TunesmithError(
            "--probe trains on your data: give --data FILE.",
            "Example: tunesmith estimate --model tiny --method lora --data train.jsonl --probe",
        )
    key = req.model.strip().lower()
    if key in BUILTIN or key in CLASS_ALIASES:
        raise TunesmithError(
            f"--probe needs weights to run, and {req.model!r} is a size class without weights.",
            "Probe with a local model folder or an alias (tiny, smollm2-135m-instruct).",
        )
    return validate_config_dict(
        {
            "model": {"name": req.model},
            "data": {"train": str(req.data), **({"max_seq_len": req.max_seq_len} if req.max_seq_len else {})},
            "lora": {"r": req.lora_r},
            "train": {
                "finetune": req.method,
                "epochs": req.epochs,
                "gradient_checkpointing": req.gradient_checkpointing,
            },
        },
        source="estimate --probe",
    )
