"""``method: dpo``: Direct Preference Optimization on preference pairs, on tunesmith's own loop.

The flow is ``train/pref_run.py`` (shared with ``method: reward``); the pair packing, answer-only log-probs,
reference pass and loss variants are ``train/pref_engine.py``. Design choices (docs/preference.md):

- **Reference**: the policy before the first step, scored once and cached for the run: a fresh adapter's
  base with the adapter disabled (peft ``disable_adapter``); an ``init_from`` SFT run's policy (the DPO
  paper's reference); the base for full fine-tuning. No second copy of the weights is ever loaded.
- **Loss types**: TRL 1.16's ``DPOConfig.loss_type`` names keep TRL's meaning (equal to TRL's loss on the same
  log-probs, tests/unit/train/test_pref_engine_loss.py); several may be combined with commas.
- **Hold-out metrics**: preference accuracy = share of hold-out pairs whose summed answer log-prob margin
  (chosen minus rejected) is positive; reward margin = beta * (policy margin - reference margin), DPO's
  implicit reward. The hold-out loss (early stopping, best weights) is the DPO loss of the hold-out pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.train.runs import RunResult

# TRL 1.16 DPOConfig.loss_type values (checked before any model loads, so a typo fails in a second)
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a DPO policy on ``cfg``'s preference pairs (contract: train/api.py; resumable like sft)."""
    from tunesmith.train import pref_run

    return pref_run.run(
        "dpo", cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop
    )


def check_loss_type(loss_type: str) -> list[str]:
    """``train.loss_type`` as TRL's list; several types may be combined with commas (e.g. ``sigmoid,sft``)."""
    types = [t.strip() for t in loss_type.split(",") if t.strip()]
    bad = [t for t in types if t not in DPO_LOSS_TYPES]
    if not types or bad:
        raise TunesmithError(
            f"train.loss_type {loss_type!r}: {', '.join(bad) or 'empty'} is not a DPO loss type.",
            f"Use one of {', '.join(DPO_LOSS_TYPES)} (or several joined by commas, e.g. sigmoid,sft).",
        )
    return types
