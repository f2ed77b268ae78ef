"""The divergence guard: a run whose loss, gradient norm or weights stop being finite ends ``failed``.

Without it a diverged run trains on NaN to the end, saves NaN weights and reports ``completed`` (an
infinite learning rate did exactly that). Checked, and why there:

- **loss and gradient norm, every optimizer step, before the optimizer steps** (``check_step``): the
  token-weighted loss is already a Python float and ``clip_grad_norm_`` already returns the total norm, so
  the check costs nothing; the optimizer never applies a non-finite update.
- **the trainable weights, before every checkpoint save** (``weights_are_finite``): a finite gradient
  times an infinite learning rate makes the *update* non-finite while the step's loss and norm were fine;
  the next step's loss would show it, but a checkpoint written in between would hold NaN weights. One
  pass over the trainable tensors per save (a save writes them all anyway).
- **every hold-out loss** (the loop's evaluations).

A diverged run raises ``TrainingDiverged`` (a ``TunesmithError``: one clear message, no traceback, exit 1)
naming the step, what was not finite, the last good checkpoint (every checkpoint on disk was checked
before it was written) and the learning rate to lower. Nothing is saved after the divergence: no
checkpoint, no final weights. The preference methods (TRL's Trainer) get the same check on the loss and
gradient norm TRL logs (``pref_common``'s callback, with transformers' ``logging_nan_inf_filter`` off,
which would otherwise average NaN losses away).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


class NonFinite(ArithmeticError):
    """A quantity of the current step is NaN or infinite (raised inside a step; ``fit`` adds the step)."""

    def __init__(self, what: str, value: float) -> None:
        super().__init__(f"{what} is {value}")
        self.what, self.value = what, value


class TrainingDiverged(TunesmithError):
    """The run diverged at ``step``: ``what`` (e.g. "the training loss") was ``value``.

    ``reason`` is the short form recorded as the failed run's ``error`` ("diverged at step N: ...")."""

    def __init__(self, step: int, what: str, value: float, lr: float, last_good: Path | None) -> None:
        kept = (
            f"The last good checkpoint, {last_good}, is kept; nothing after it was saved."
            if last_good is not None
            else "No checkpoint had been saved before it; nothing was saved."
        )
        super().__init__(
            f"Training diverged at step {step}: {what} is {value}. The run stopped as failed. {kept}",
            f"Lower train.lr (this run used {lr:g}; try {lr / 10:g}) and start a new run; a warmup "
            "(train.warmup_ratio: 0.03) and gradient clipping (train.max_grad_norm: 1.0) also help.",
        )
        self.step, self.what, self.value, self.last_good = step, what, value, last_good
        self.reason = f"diverged at step {step}: {what} is {value}"


def check_step(loss: float, grad_norm: Any = None) -> None:
    """Raise ``NonFinite`` when the step's loss or gradient norm (a float or 0-d tensor) is NaN or infinite."""
    if not math.isfinite(loss):
        raise NonFinite("the training loss", loss)
    if grad_norm is not None:
        norm = float(grad_norm)
        if not math.isfinite(norm):
            raise NonFinite("the gradient norm", norm)


def weights_are_finite(tensors: Any) -> bool:
    """Whether every tensor in ``tensors`` (an iterable of torch tensors) holds only finite values."""
    import torch

    return all(bool(torch.isfinite(t).all()) for t in tensors)


def failure_text(exc: BaseException) -> str:
    """The ``error`` a failed run records: "diverged at step N: ..." for a divergence, else the exception."""
    return exc.reason if isinstance(exc, TrainingDiverged) else f"{type(exc).__name__}: {exc}"
