"""``RunSummary``: what a training run reports, one shape for every method (sft, cpt, dpo, reward, ppo, rloo,
grpo).

Written once per run to ``<run>/summary.json`` by ``write_run_summary`` (``train.runs.Run.finish``) and read
back by ``read_run_summary`` everywhere else (``runs list/show``, ``compare``, the job worker, the demo
report, ``score``/``eval`` on a run folder). Shared ideas have one name across methods: ``final_train_loss``
is the training loss at the end of every method's run, ``tokens_trained`` the tokens that carried loss.
What only one method measures sits in ``extras``, a typed object chosen by ``method``.

Old run folders still load: summaries written before this type (sft's ``final_train_loss``, dpo/reward's
``train_loss_last``, ppo's ``train_prompts`` ...) are read into the same shape (``_from_legacy``); the
file on disk is never rewritten.

This module sits at the bottom of the layer plan (docs/DEVELOPING.md): it imports nothing from tunesmith
but ``errors``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.errors import TunesmithError

SUMMARY_VERSION = 1
Method = Literal["sft", "cpt", "dpo", "reward", "ppo", "rloo", "grpo"]
# completed | early_stopped | stopped (Ctrl-C, cancel, pause) | failed | interrupted; "running" in a registry
Status = str

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Forgetting(BaseModel):
    """The forgetting probe (train/probe.py): loss on general text before and after training."""

    model_config = _FROZEN
    before: float = Field(description="Probe loss before training.")
    after: float = Field(description="Probe loss after training.")
    increase: float = Field(description="(after - before) / before.")


class MemoryRecord(BaseModel):
    """The memory plan a sft/cpt run followed (train/plan.py) and the peak it measured."""

    model_config = _FROZEN
    device: str
    budget_gb: float = Field(description="The memory budget.")
    budget_source: str = Field(description="train.memory_budget_gb, or how auto computed it.")
    micro_tokens: int = Field(description="Tokens per micro-batch at the end of the run.")
    micro_tokens_reason: str = Field(description="What bounded the micro-batch (budget, speed cap, ...).")
    gradient_checkpointing: bool
    estimate_gb: float = Field(description="Estimated peak at micro_tokens.")
    measured_peak_gb: float | None = Field(None, description="Measured peak of the training steps.")
    replanned_from: int | None = Field(None, description="micro_tokens before the measured re-plan.")
    oom_retries: int = Field(0, description="Steps retried with a halved micro-batch after out-of-memory.")
    distributed: str = Field(
        "single", description="How the processes shared the model: single (one process), ddp or fsdp."
    )
    distributed_reason: str = Field("", description="Why: train.distributed, or the auto rule's reason.")


class PlanRecord(BaseModel):
    """The schedule a sft/cpt run followed: each value and where it came from (``rule``)."""

    model_config = _FROZEN
    examples_per_step: int | None = Field(None, description="None: token-sized steps (train.batch_tokens).")
    epochs: float
    steps_per_epoch: int
    total_steps: int
    lr: float
    warmup_steps: int
    rule: dict[str, str] = Field(default_factory=dict, description="Field -> config or the rule used.")
    memory: MemoryRecord


class LoopExtras(BaseModel):
    """sft and cpt (tunesmith's own loop)."""

    model_config = _FROZEN
    method: Literal["sft", "cpt"]
    task: str | None = Field(None, description="The data's task (chat, classification, text, ...).")
    lr: float | None = Field(None, description="The learning rate used (train.lr or its default).")
    stopped_early: bool = Field(False, description="Early stopping ended the run.")
    weights: str | None = Field(None, description="Which weights were saved: 'final' or 'best (step N)'.")
    skipped_lines: int = Field(0, description="Data lines skipped (with --force).")
    truncated_answers: int = Field(0, description="Examples whose answer was cut at data.max_seq_len.")
    forgetting: Forgetting | None = Field(None, description="Forgetting probe, when train.forgetting_probe.")
    plan: PlanRecord | None = Field(None, description="The run's plan (schedule, memory) and measured peak.")


class DpoExtras(BaseModel):
    """dpo: hold-out preference accuracy and margins before and after training."""

    model_config = _FROZEN
    method: Literal["dpo"] = "dpo"
    init_from: str | None = Field(None, description="The SFT run the policy started from.")
    beta: float | None = None
    loss_type: str | None = None
    holdout_preference_accuracy_before: float | None = None
    holdout_preference_accuracy: float | None = None
    holdout_logp_margin_before: float | None = None
    holdout_logp_margin: float | None = None
    holdout_reward_margin: float | None = Field(None, description="beta * (policy - reference) margin.")
    stopped_early: bool = Field(False, description="Early stopping ended the run.")
    weights: str | None = Field(None, description="Which weights were saved: 'final' or 'best (step N)'.")
    truncated_pairs: int = Field(0, description="Pairs with a side cut to data.max_seq_len (prompt first).")
    plan: PlanRecord | None = Field(None, description="The run's plan (schedule, memory) and measured peak.")


class RewardExtras(BaseModel):
    """reward: hold-out pairwise accuracy and reward margin before and after training."""

    model_config = _FROZEN
    method: Literal["reward"] = "reward"
    holdout_pairwise_accuracy_before: float | None = None
    holdout_pairwise_accuracy: float | None = None
    holdout_reward_margin_before: float | None = None
    holdout_reward_margin: float | None = None
    stopped_early: bool = Field(False, description="Early stopping ended the run.")
    weights: str | None = Field(None, description="Which weights were saved: 'final' or 'best (step N)'.")
    truncated_pairs: int = Field(0, description="Pairs with a side cut to data.max_seq_len (prompt first).")
    plan: PlanRecord | None = Field(None, description="The run's plan (schedule, memory) and measured peak.")


class ProbeGeneration(BaseModel):
    model_config = _FROZEN
    prompt: str
    before: str
    reward_before: float
    after: str
    reward_after: float


class RlExtras(BaseModel):
    """ppo, rloo and grpo: the reward and KL curves, and greedy answers to probe prompts rewarded before and
    after. ``algorithm`` says what trained: runs of ``method: ppo`` written before it was PPO say ``rloo``."""

    model_config = _FROZEN
    method: Literal["ppo", "rloo", "grpo"] = "ppo"
    algorithm: str = Field("rloo", description="ppo, rloo or grpo.")
    init_from: str | None = None
    reward_model: str | None = None
    grader: str | None = Field(None, description="The grader file the reward came from (train.grader).")
    beta: float | None = Field(None, description="KL coefficient (ppo: the initial one).")
    num_generations: int | None = None
    train_reward_first: float | None = None
    train_reward_last: float | None = None
    kl_last: float | None = None
    kl_coef_last: float | None = Field(None, description="ppo: the KL coefficient at the end (adaptive).")
    value_loss_first: float | None = Field(None, description="ppo: value loss, mean of the first steps.")
    value_loss_last: float | None = Field(None, description="ppo: value loss, mean of the last steps.")
    probe_reward_before: float | None = None
    probe_reward_after: float | None = None
    probe_generations: list[ProbeGeneration] = Field(default_factory=list)


PpoExtras = RlExtras  # the name before rloo and grpo shared it


RunExtras = Annotated[LoopExtras | DpoExtras | RewardExtras | RlExtras, Field(discriminator="method")]


class RunSummary(BaseModel):
    """One training run's outcome. Losses are mean token cross-entropy for sft/cpt and the method's own
    training loss for dpo/reward/ppo (TRL's logged ``loss``; first/final are the mean of the first/last three
    logged values there, which smooths TRL's per-step noise). ``None`` means not measured (e.g. no hold-out,
    a run that failed before its first step); NaN means the loss diverged."""

    # A loss that went NaN/inf is written as NaN/Infinity (Python's json reads them back), so a diverged run
    # never looks like one that measured nothing (None / null).
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")
    summary_version: int = SUMMARY_VERSION
    run_id: str
    method: Method
    status: Status = Field(description="completed | early_stopped | stopped | failed | interrupted.")
    base_model: str | None = None
    finetune: str | None = Field(None, description="full | lora | qlora | dora.")
    steps: int = Field(0, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Steps the run planned (sft/cpt).")
    epochs_completed: int | None = None
    first_train_loss: float | None = None
    final_train_loss: float | None = Field(None, description="Training loss at the end of the run.")
    best_train_loss: float | None = Field(None, description="Lowest logged training loss.")
    first_val_loss: float | None = None
    final_val_loss: float | None = Field(None, description="Hold-out loss at the end (sft/cpt).")
    best_val_loss: float | None = Field(None, description="Lowest hold-out loss (sft/cpt).")
    best_step: int | None = None
    tokens_trained: int | None = Field(None, description="Tokens that carried loss.")
    tokens_seen: int | None = Field(None, description="Every non-padding token the model read.")
    train_examples: int | None = Field(
        None, description="Training examples, pairs (dpo/reward) or prompts (ppo)."
    )
    holdout_examples: int | None = None
    wall_time_s: float | None = None
    peak_memory_mb: float | None = Field(None, description="Peak resident memory of the training process.")
    allocator: str | None = Field(None, description="jemalloc | system.")
    resumed_from: str | None = Field(None, description="The checkpoint a resumed run continued from.")
    error: str | None = Field(None, description="What ended a failed or interrupted run.")
    extras: RunExtras | None = Field(None, description="What only this method measures.")

    @model_validator(mode="after")
    def _extras_match_method(self) -> RunSummary:
        if self.extras is not None and self.method not in _methods_of(self.extras):
            raise ValueError(f"extras are for method {self.extras.method}, the run is method {self.method}")
        return self


def _methods_of(extras: BaseModel) -> tuple[str, ...]:
    return ("sft", "cpt") if isinstance(extras, LoopExtras) else (extras.method,)  # type: ignore[attr-defined]


def write_run_summary(path: Path, summary: RunSummary) -> Path:
    """Write ``summary`` as JSON to ``path`` (a file, or a run folder: then ``<folder>/summary.json``),
    atomically (a temp file renamed over it), so a reader never sees half a summary.

    Raises:
        TunesmithError: when the folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    text = summary.model_dump_json(indent=2) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise TunesmithError(
            f"Cannot write the run summary {path}: {exc.strerror or exc}.",
            "Check the run folder's permissions.",
        ) from None
    return path


def read_run_summary(path: Path) -> RunSummary:
    """The summary of a run folder (or a ``summary.json`` path), in the current shape whatever version of
    tunesmith wrote it.

    Raises:
        TunesmithError: when the file is missing, not JSON, or not a run summary (naming the field).
    """
    path = Path(path)
    file = path / "summary.json" if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunesmithError(
            f"{file} does not exist.", "Pass a training run folder (runs/<run_id>) that finished writing."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunesmithError(
            f"Cannot read {file}: {exc}.", "Pass a run folder written by tunesmith."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TunesmithError(
            f"{file} is not valid JSON (line {exc.lineno}: {exc.msg}).",
            "Pass a run folder written by tunesmith.",
        ) from None
    return run_summary_from_dict(data, source=str(file), run_id=file.parent.name)


def run_summary_from_dict(
    data: Any, *, source: str = "summary", run_id: str | None = None, method: str | None = None
) -> RunSummary:
    """``data`` (a parsed summary.json, current or older shape) as a ``RunSummary``. ``run_id`` and
    ``method`` fill in what very old records left out.

    Raises:
        TunesmithError: when ``data`` is not a run summary; the message names ``source`` and the field.
    """
    if not isinstance(data, dict):
        raise TunesmithError(
            f"{source} does not hold a JSON object.", "Pass a run folder written by tunesmith."
        )
    if "summary_version" not in data:
        data = _from_legacy(data)
    data = {"run_id": run_id, "method": method, **{k: v for k, v in data.items() if v is not None}}
    data.setdefault("status", "unknown")
    try:
        return RunSummary.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise TunesmithError(
            f"{source} is not a tunesmith run summary: {field}: {err['msg']}.",
            "Pass a run folder written by tunesmith (its summary.json).",
        ) from None


# --------------------------------------------------------------------------- older shapes

# keys every method wrote under the same name as now
_COMMON = {
    "run_id", "base_model", "method", "finetune", "status", "steps", "total_steps", "epochs_completed",
    "first_train_loss", "final_train_loss", "first_val_loss", "final_val_loss", "best_val_loss",
    "best_step", "tokens_trained", "tokens_seen", "train_examples", "holdout_examples", "wall_time_s",
    "peak_memory_mb", "allocator", "resumed_from", "error",
}  # fmt: skip
# older name -> current name
_RENAMED = {
    "train_loss_first": "first_train_loss",  # dpo, reward
    "train_loss_last": "final_train_loss",  # dpo, reward
    "train_pairs": "train_examples",  # dpo, reward
    "holdout_pairs": "holdout_examples",  # dpo, reward
    "train_prompts": "train_examples",  # ppo
}
_EXTRAS: dict[str, type[BaseModel]] = {
    "sft": LoopExtras, "cpt": LoopExtras, "dpo": DpoExtras, "reward": RewardExtras, "ppo": RlExtras,
}  # fmt: skip


def _from_legacy(old: dict[str, Any]) -> dict[str, Any]:
    """A summary written before ``summary_version`` existed, in the current shape. Keys the current shape
    has no place for are dropped (they stay in the file)."""
    new: dict[str, Any] = {k: old[k] for k in _COMMON if k in old}
    new |= {cur: old[k] for k, cur in _RENAMED.items() if k in old and cur not in new}
    cls = _EXTRAS.get(str(old.get("method")))
    if cls is not None:
        fields = set(cls.model_fields) - {"method"}
        extras = {k: v for k, v in old.items() if k in fields and v is not None}
        if extras or old.get("status") not in ("failed", "interrupted"):
            new["extras"] = {"method": old["method"], **extras}
    return new
