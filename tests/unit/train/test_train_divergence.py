"""The divergence guard's pieces (train/divergence.py) and its TRL callback (pref_common.py, used by ppo).
The guard inside the loop, end to end, is tests/integration/train/test_train_safety.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.train.divergence import (
    NonFinite,
    TrainingDiverged,
    check_step,
    failure_text,
    weights_are_finite,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("loss", "norm", "what"),
    [(math.nan, 1.0, "the training loss"), (math.inf, 1.0, "the training loss"),
     (2.0, torch.tensor(math.inf), "the gradient norm"), (2.0, torch.tensor(math.nan), "the gradient norm")],
)  # fmt: skip
def test_non_finite_loss_or_norm_is_caught(loss: float, norm: object, what: str) -> None:
    with pytest.raises(NonFinite) as info:
        check_step(loss, norm)
    assert info.value.what == what


def test_finite_step_passes() -> None:
    check_step(2.5, torch.tensor(0.7))
    check_step(2.5, None)
    assert weights_are_finite([torch.ones(3), torch.zeros(2, 2)])
    assert not weights_are_finite([torch.ones(3), torch.tensor([0.0, math.nan])])


def test_the_error_names_step_checkpoint_and_a_lower_lr() -> None:
    err = TrainingDiverged(7, "the training loss", math.nan, 2e-4, Path("runs/x/checkpoints/step-00000006"))
    assert "step 7" in err.message and "step-00000006" in err.message and "is kept" in err.message
    assert "train.lr" in err.hint and "2e-05" in err.hint
    assert failure_text(err) == "diverged at step 7: the training loss is nan"
    none_saved = TrainingDiverged(1, "the gradient norm", math.inf, 1e-3, None)
    assert "nothing was saved" in none_saved.message
    assert failure_text(ValueError("x")) == "ValueError: x"


def test_trl_runs_stop_on_a_nan_loss_they_log(tmp_path: Path) -> None:
    from trl import RLOOConfig

    from tunesmith.train.pref_common import MetricsSink, _callback, trl_args

    cfg = load_config(None, ["model.name=tiny", f"train.output_dir={tmp_path}"])
    args = trl_args(RLOOConfig, cfg, tmp_path / "trl")
    assert args.logging_nan_inf_filter is False  # else the Trainer averages NaN losses away
    callback = _callback(MetricsSink())
    state, control = SimpleNamespace(global_step=3), SimpleNamespace(should_training_stop=False)
    callback.on_log(args, state, control, logs={"loss": 0.7, "grad_norm": 1.2})  # a finite step passes
    with pytest.raises(TrainingDiverged) as info:
        callback.on_log(args, state, control, logs={"loss": math.nan, "grad_norm": 1.2})
    assert info.value.step == 3 and info.value.what == "the training loss"
    with pytest.raises(TrainingDiverged, match="gradient norm"):
        callback.on_log(args, state, control, logs={"loss": 0.7, "grad_norm": math.inf})
