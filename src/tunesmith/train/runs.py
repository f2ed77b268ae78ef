"""Run plumbing shared by every training method (sft, cpt here; dpo/reward/ppo/rloo/grpo use it too).

A run lives in ``<train.output_dir>/<run_id>/``::

    config.resolved.yaml   the full config after defaults and overrides (written first)
    metrics.jsonl          one JSON object per logging step / evaluation
    checkpoints/           crash-safe checkpoints (see checkpoints.py)
    adapter/ | model/      final weights: PEFT adapter (lora/qlora/dora) or full model, tokenizer beside them
    summary.json           a tunesmith.results.RunSummary (losses, tokens, wall time, peak memory, status, extras)

Usage from a method module::

    run = create_run(cfg)                    # refuses an existing folder or an unwritable output_dir
    run.log({"step": 1, "loss": 2.3})        # metrics.jsonl (+ TensorBoard/MLflow: train/trackers.py)
    run.save_weights(model, tokenizer)       # adapter/ or model/, written atomically
    result = run.finish(measures, "completed")  # summary.json (RunSummary) + registry record
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig, dump_config, validate_config_dict
from tunesmith.errors import TunesmithError
from tunesmith.results.run import RunSummary, write_run_summary
from tunesmith.train.checkpoints import atomic_dir, write_text_atomic
from tunesmith.train.registry import RunRegistry
from tunesmith.train.trackers import check_trackers, open_trackers
from tunesmith.yamlsafe import load_yaml_file

# Methods trained by tunesmith's own loop (train/loop.py), which writes resumable checkpoints; ppo (its own
# PPO loop) and the TRL-based rloo and grpo refuse --resume (train/pref_common.refuse_resume).
RESUMABLE_METHODS = frozenset({"sft", "cpt", "dpo", "reward"})


def supports_resume(method: str) -> bool:
    """Whether a stopped run of ``method`` can be continued with ``--resume``."""
    return method in RESUMABLE_METHODS


@dataclass(frozen=True)
class RunResult:
    """What a training call returns: where the run is and its summary (also in summary.json)."""

    run_dir: Path
    summary: RunSummary
    model: Any = field(default=None, repr=False, compare=False)  # the trained model, in memory (sft/cpt)

    @property
    def status(self) -> str:
        return self.summary.status


@dataclass
class Run:
    run_id: str
    run_dir: Path
    cfg: ProjectConfig
    resumed: bool = False
    started: float = field(default_factory=time.time)
    is_main: bool = True  # rank 0 under torch.distributed: only it writes files
    last_saved_step: int | None = None
    _sinks: list[Any] = field(default_factory=list)  # train/trackers.py: TensorBoard, MLflow

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def registry(self) -> RunRegistry:
        return RunRegistry(self.run_dir.parent)

    def log(self, row: dict[str, Any]) -> None:
        """Append one metrics row (flushed at once, so a crash loses at most the row being written)."""
        if not self.is_main:
            return
        row = {"time": round(time.time() - self.started, 3), **row}
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        step = int(row.get("step", 0))
        numbers = {
            k: float(v) for k, v in row.items() if isinstance(v, int | float) and k not in ("step", "time")
        }
        for tracker in self._sinks:
            tracker.log(numbers, step)

    def save_weights(self, model: Any, tokenizer: Any) -> Path:
        """``adapter/`` (PEFT format) or ``model/`` (full), tokenizer and chat template beside the weights."""
        from tunesmith.train.adapters import unwrap

        model = unwrap(model)
        name = "adapter" if hasattr(model, "peft_config") else "model"
        final = self.run_dir / name
        if self.is_main:
            with atomic_dir(final, replace=True) as tmp:
                model.save_pretrained(str(tmp), safe_serialization=True)
                tokenizer.save_pretrained(str(tmp))
        return final

    def finish(self, measures: dict[str, Any], status: str) -> RunResult:
        """Build the run's ``RunSummary`` from the method's ``measures`` (``RunSummary`` field names, with
        the method's typed ``extras``) plus what every run records (status, wall time, peak memory,
        allocator); write summary.json and record it in the registry.

        Raises:
            pydantic.ValidationError: when ``measures`` names a field RunSummary does not have (a bug).
        """
        measures = dict(measures)
        summary = RunSummary(
            run_id=self.run_id,
            base_model=measures.pop("base_model", None) or self.cfg.model.name,
            method=self.cfg.train.method,
            finetune=self.cfg.train.finetune,
            **measures,
            status=status,
            wall_time_s=round(time.time() - self.started, 3),
            peak_memory_mb=peak_memory_mb(),
            allocator=allocator_in_use(),
        )
        if self.is_main:
            write_run_summary(self.run_dir / "summary.json", summary)
            self.registry.finish(self.run_id, status, summary)
            for tracker in self._sinks:
                tracker.close(status)
        return RunResult(self.run_dir, summary)


def create_run(cfg: ProjectConfig, *, is_main: bool = True) -> Run:
    """A new run folder with config.resolved.yaml, registered as running. Refuses an unwritable
    ``output_dir`` and an existing run folder (so nothing saved is ever overwritten)."""
    # Under --nproc only rank 0 checks and creates the folder; the others would see it and refuse.
    run_dir = check_new_run_dir(cfg) if is_main else cfg.train.output_dir / str(cfg.train.run_name)
    run_id = run_dir.name
    run = Run(run_id, run_dir, cfg, is_main=is_main)
    if is_main:
        run_dir.mkdir(parents=True)
        write_text_atomic(run_dir / "config.resolved.yaml", dump_config(cfg))
        run.registry.add(run_id, run_dir, cfg.train.method, cfg.train.finetune, cfg.model.name)
    run._sinks = open_trackers(cfg, run_dir) if is_main else []
    return run


def check_new_run_dir(cfg: ProjectConfig) -> Path:
    """The folder a new run of ``cfg`` will use, after checking it can be created; nothing is written."""
    out = cfg.train.output_dir
    check_writable(out)
    check_trackers(cfg.train.report_to)
    run_id = cfg.train.run_name or default_run_id(cfg)
    run_dir = out / run_id
    if run_dir.exists():
        raise TunesmithError(
            f"The run folder {run_dir} already exists; it is left untouched.",
            f"Pick another train.run_name, remove it with `tunesmith runs rm {run_id}`, or continue it with --resume {run_dir}.",
        )
    return run_dir


def open_run_for_resume(run_dir: Path, cfg: ProjectConfig | None = None, *, is_main: bool = True) -> Run:
    """Reopen an existing run: its saved config wins; ``cfg`` (when given) may only differ in keys that
    do not change what is trained (see RESUME_MAY_CHANGE)."""
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.resolved.yaml"
    if not saved_path.exists():
        raise TunesmithError(
            f"{run_dir} is not a tunesmith run folder (no config.resolved.yaml).", "Pass runs/<run_id>."
        )
    raw = load_yaml_file(saved_path, "run config")  # a damaged file is one clear error, not a traceback
    if not isinstance(raw, dict):
        raise TunesmithError(
            f"{saved_path} is damaged: it does not hold the run's config.",
            "Start a new run; without its config this run cannot be resumed.",
        )
    saved = validate_config_dict(raw, str(saved_path))
    if cfg is not None:
        diffs = config_differences(saved, cfg)
        if diffs:
            raise TunesmithError(
                f"Cannot resume {run_dir}: the config differs from the run's in {', '.join(diffs)}.",
                "Resume with the run's own config (config.resolved.yaml), or start a new run.",
            )
        for key in RESUME_MAY_CHANGE:
            setattr(saved.train, key, getattr(cfg.train, key))
    saved.train.output_dir = run_dir.parent
    saved.train.run_name = run_dir.name
    run = Run(run_dir.name, run_dir, saved, resumed=True, is_main=is_main)
    if is_main:
        run.registry.add(run.run_id, run_dir, saved.train.method, saved.train.finetune, saved.model.name)
        write_text_atomic(run_dir / "config.resolved.yaml", dump_config(saved))
    run._sinks = open_trackers(saved, run_dir) if is_main else []
    return run


# Keys that only change logging, checkpoint cadence or patience; output_dir/run_name come from the folder.
RESUME_MAY_CHANGE = (
    "early_stopping_patience",
    "save_every",
    "keep_checkpoints",
    "logging_steps",
    "report_to",
    "memory_budget_gb",  # only the micro-batch depends on it, never what a step trains on (train/plan.py)
    "distributed",  # ddp or fsdp: the same steps, the same losses; checkpoints are in one format
)
_IGNORED_ON_RESUME = {"train.output_dir", "train.run_name"}


def config_differences(a: ProjectConfig, b: ProjectConfig) -> list[str]:
    """Dotted keys whose values differ (ignoring the ones a resume may change)."""
    fa, fb = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    allowed = {f"train.{k}" for k in RESUME_MAY_CHANGE} | _IGNORED_ON_RESUME
    return sorted(k for k in fa.keys() | fb.keys() if k not in allowed and fa.get(k) != fb.get(k))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("json_schema",):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_run_id(cfg: ProjectConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{cfg.train.method}-{cfg.train.finetune}"
    run_id, n = base, 1
    while (cfg.train.output_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def check_writable(folder: Path) -> None:
    """Refuse early (before any model loads) when runs cannot be written under ``folder``."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise TunesmithError(
            f"train.output_dir {folder}: {probe} is a file, not a folder.",
            "Set train.output_dir to a folder.",
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TunesmithError(
            f"train.output_dir {folder} is not writable (no write permission on {probe}).",
            "Set train.output_dir to a folder you can write to, e.g. train.output_dir=./runs",
        )


def allocator_in_use() -> str:
    """``jemalloc`` when this process runs on it (tunesmith/allocator.py), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def peak_memory_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)
