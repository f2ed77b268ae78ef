"""Optimizer steps into micro-batches under the memory plan, while training (train/plan.py makes the plan).

- Each optimizer step's examples are split into micro-batches of at most ``micro_tokens`` tokens
  (``packing.step_batches``); the loop's token-weighted accumulation makes the step's gradient the same
  whatever the split, so changing the micro-batch never changes the loss curve.
- **Measured correction**: the process's peak memory is reset before the first step and read after
  ``MEASURE_STEPS`` steps; when the measured activations per token disagree with the estimate (or the
  peak passed the budget), the micro-batch is chosen again, once (``plan.replan``).
- **Out of memory**: a step that raises an out-of-memory error (``torch.OutOfMemoryError`` on a GPU, or the
  CPU allocator's "not enough memory") drops its partial gradients, halves the micro-batch and is retried
  once; a second failure stops the run with a clear error. Under ``--nproc`` every process must fail alike
  (the retry is local to a process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from tunesmith.errors import TunesmithError
from tunesmith.train.packing import Batch, Step, step_batches
from tunesmith.train.plan import GB, MemoryPlan, PeakMeter, replan

MEASURE_STEPS = 2
T = TypeVar("T")


class MicroBatcher:
    """Holds the live memory plan of a run: ``run(step, fn)`` calls ``fn(micro_batches)`` for one optimizer
    step, with the out-of-memory retry and the one-time re-plan; ``plan`` is the plan as it ends up."""

    def __init__(
        self,
        plan: MemoryPlan,
        *,
        packing: bool,
        world: int = 1,
        step_tokens: int | None = None,
        emit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.plan = plan
        self.packing, self.world, self.step_tokens = packing, world, step_tokens
        self.emit = emit or (lambda event: None)
        self.meter = PeakMeter(plan.device)
        self.steps = 0
        self.largest = 0  # tokens of the biggest micro-batch run so far
        self.measured = False

    def start(self) -> None:
        """Call right before the first step: the peak is measured from here."""
        self.meter.reset()

    def batches(self, step: Step) -> list[Batch]:
        return step_batches(step, micro_tokens=self.plan.micro_tokens, packing=self.packing, world=self.world)

    def run(self, step: Step, fn: Callable[[list[Batch]], T], reset: Callable[[], None]) -> T:
        """``fn(micro_batches)`` for ``step``; on out-of-memory: ``reset()`` (drop partial gradients), halve
        the micro-batch, retry once.

        Raises:
            TunesmithError: when the retry runs out of memory too.
        """
        micro = self.batches(step)
        try:
            out = fn(micro)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not is_oom(exc):
                raise
            micro = self._halve(exc, reset, step)
            try:
                out = fn(micro)
            except Exception as again:  # noqa: BLE001
                if not is_oom(again):
                    raise
                reset()
                raise TunesmithError(
                    f"Out of memory twice in one step, the second time with micro-batches of "
                    f"{self.plan.micro_tokens} tokens ({again}).",
                    "Lower train.memory_budget_gb, set train.gradient_checkpointing: true, use finetune: "
                    "qlora, or lower data.max_seq_len.",
                ) from None
        self.steps += 1
        self.largest = max([self.largest, *(int(b.input_ids.numel()) for b in micro)])  # type: ignore[attr-defined]
        if not self.measured and self.steps >= MEASURE_STEPS:
            self._measure()
        return out

    def finish(self) -> MemoryPlan:
        """The plan with the peak of the whole run measured."""
        peak = self.meter.peak()
        if peak is not None:
            self.plan = replace(self.plan, measured_peak=max(peak, self.plan.measured_peak or 0.0))
        return self.plan

    def _halve(self, exc: Exception, reset: Callable[[], None], step: Step) -> list[Batch]:
        reset()
        _free_cache(self.plan.device)
        before = self.plan.micro_tokens
        self.plan = replace(
            self.plan, micro_tokens=max(before // 2, 16), oom_retries=self.plan.oom_retries + 1,
            reason="halved after out of memory",
        )  # fmt: skip
        self.emit({"event": "oom", "micro_tokens_before": before, "micro_tokens": self.plan.micro_tokens,
                   "error": str(exc)[:200]})  # fmt: skip
        return self.batches(step)

    def _measure(self) -> None:
        self.measured = True
        peak = self.meter.peak()
        if peak is None:
            return
        new = replan(self.plan, peak, self.meter.baseline, self.largest, self.step_tokens)
        if new.replanned_from is not None:
            self.emit({"event": "replan", "micro_tokens_before": new.replanned_from,
                       "micro_tokens": new.micro_tokens, "measured_peak_gb": round(peak / GB, 2),
                       "estimate_gb": round(self.plan.estimate / GB, 2)})  # fmt: skip
        self.plan = new


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator running out of memory (CUDA or CPU)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def _free_cache(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
