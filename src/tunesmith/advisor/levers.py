"""What makes a run fit a GPU, and what each setting costs in time (``tunesmith estimate``, "fits with").

The estimate prices the settings it was given; a run that does not fit that way usually fits with the
settings every recipe for that size uses (the QLoRA paper fine-tunes a 65B model on one 48 GB GPU with a
4-bit base, gradient checkpointing and a paged optimizer). For each GPU the levers below are applied in
order, cheapest in time first, until the run fits (``fit_with_levers``); each step reports the memory and
the hours *with every lever so far*, so the price of each is visible (a lever that saves less than 2% of
the memory is skipped):

1. **micro-batch 1** (when the setup has more sequences per micro-batch): activations / batch; the same
   effective batch through gradient accumulation (tunesmith's trainer does this itself from
   ``train.memory_budget_gb``). Time: unchanged in this model (smaller matmuls lose a little utilisation).
2. **8-bit AdamW** (bitsandbytes block-wise 8-bit states; Dettmers et al. 2022, "8-bit Optimizers via
   Block-wise Quantization"): Adam's two moments in 1 byte each instead of 4 (the fp32 master copy of full
   fine-tuning stays). Time: unchanged (the paper reports equal speed).
3. **gradient checkpointing**: activations are recomputed in backward; time x (FLOPs with recompute /
   FLOPs without), i.e. one more forward pass (~+33% for full fine-tuning).
4. **paged optimizer** (QLoRA paper, section 3): optimizer state in unified memory that pages to CPU RAM
   under pressure; counted here as leaving the GPU. Time: unchanged while pages rarely move (the QLoRA
   paper's setting); heavy paging is slower, which this model does not price.
5. **4-bit base** (QLoRA, adapters only): NF4 base weights; time x the sheet's ``qlora_slowdown``.
6. **shorter sequences** (last: it changes what is trained): the sequence length halved down to 256 tokens
   until it fits; examples longer than that are truncated (``data.max_seq_len``). Time: unchanged in this
   model (the run's token count is the data's).

tunesmith's own trainer offers 1, 3, 5 and 6 (``train.memory_budget_gb``, ``train.gradient_checkpointing``,
``train.finetune: qlora``, ``data.max_seq_len``); 2 and 4 are TRL/transformers ``optim`` settings
(``adamw_bnb_8bit``, ``paged_adamw_8bit``), named so a run elsewhere can use them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tunesmith.advisor.estimate import Workload, training_flops
from tunesmith.models.memory import Memory, Setup, memory

GB = 1e9
MIN_SAVING = 0.02  # a lever that saves less than 2% of the memory is not proposed


@dataclass(frozen=True)
class LeverStep:
    lever: str  # micro_batch, optimizer_8bit, gradient_checkpointing, paged_optimizer, base_4bit, seq_len
    setting: str  # how to set it
    memory_gb: float  # GPU memory needed with every lever so far (context and fragmentation included)
    hours: float  # run time with every lever so far
    time_factor: float  # hours / hours as given

    def to_json(self) -> dict[str, Any]:
        return {
            "lever": self.lever,
            "setting": self.setting,
            "memory_gb": round(self.memory_gb, 2),
            "hours": self.hours,
            "time_factor": round(self.time_factor, 3),
        }


@dataclass(frozen=True)
class FitAdvice:
    gpu: str
    fits_as_given: bool
    fits: bool  # with ``levers`` applied (all of them when it still does not fit)
    levers: list[LeverStep]  # [] when it fits as given
    memory_gb: float
    hours: float

    def to_json(self) -> dict[str, Any]:
        return {
            "fits_as_given": self.fits_as_given,
            "fits": self.fits,
            "with": [s.to_json() for s in self.levers],
            "memory_gb": round(self.memory_gb, 2),
            "hours": self.hours,
        }


def fit_with_levers(
    arch: Any, setup: Setup, workload: Workload, gpu_name: str, gpu: Any, prices: Any
) -> FitAdvice:
    """The levers (module docstring) applied in order until the run fits ``gpu`` (a price-sheet GPU)."""
    util = gpu.utilisation or setup.mfu or prices.assume("utilisation")
    ctx, frag = prices.assume("cuda_context_gb"), prices.assume("fragmentation")

    def need(s: Setup, opt_scale: float) -> float:
        m = memory(arch, s, bytes_per_act=2, precision="mixed")
        return _total(m, s, opt_scale) * (1 + frag) + ctx

    def hours(s: Setup) -> float:
        flops, _ = training_flops(arch, s, workload)
        slow = {"qlora": prices.assume("qlora_slowdown"), "dora": prices.assume("dora_slowdown")}
        return flops / (gpu.bf16_tflops * 1e12 * util) / 3600 * slow.get(s.method, 1.0)

    base_hours = hours(setup)
    cur, opt = setup, 1.0
    mem = need(cur, opt)
    if mem <= gpu.memory_gb:
        return FitAdvice(gpu_name, True, True, [], mem, base_hours)
    steps: list[LeverStep] = []
    for lever, setting, nxt, nopt in _levers(setup):
        if nxt is None:
            continue
        if lever == "seq_len":
            while cur.seq_len > 256 and need(cur, opt) > gpu.memory_gb:
                cur = replace(cur, seq_len=max(cur.seq_len // 2, 256))
            setting = f"data.max_seq_len: {cur.seq_len} (truncates longer examples)"
        else:
            trial, trial_opt = nxt(cur), nopt if nopt is not None else opt
            if need(trial, trial_opt) > mem * (1 - MIN_SAVING):
                continue  # saves too little to be worth naming
            cur, opt = trial, trial_opt
        mem, h = need(cur, opt), hours(cur)
        steps.append(LeverStep(lever, setting, mem, h, h / base_hours if base_hours else 1.0))
        if mem <= gpu.memory_gb:
            return FitAdvice(gpu_name, False, True, steps, mem, h)
    return FitAdvice(gpu_name, False, False, steps, mem, hours(cur))


def _levers(setup: Setup) -> list[tuple[str, str, Any, float | None]]:
    adapters = setup.method in ("lora", "dora")
    return [
        (
            "micro_batch",
            "micro-batch 1 with gradient accumulation (tunesmith: train.memory_budget_gb plans it)",
            (lambda s: replace(s, batch_size=1)) if setup.batch_size > 1 else None,
            None,
        ),
        (
            "optimizer_8bit",
            "8-bit AdamW (TRL/transformers optim: adamw_bnb_8bit)",
            lambda s: s,
            0.25,
        ),
        (
            "gradient_checkpointing",
            "train.gradient_checkpointing: true",
            (lambda s: replace(s, gradient_checkpointing=True)) if not setup.gradient_checkpointing else None,
            None,
        ),
        ("paged_optimizer", "paged 8-bit AdamW (TRL/transformers optim: paged_adamw_8bit)", lambda s: s, 0.0),
        (
            "base_4bit",
            "train.finetune: qlora (4-bit NF4 base)",
            (lambda s: replace(s, method="qlora")) if adapters else None,
            None,
        ),
        ("seq_len", "", lambda s: s, None),
    ]


def _total(m: Memory, s: Setup, opt_scale: float) -> float:
    # opt_scale scales Adam's moments: 1 (fp32), 0.25 (8-bit), 0 (paged out). Full fine-tuning in mixed
    # precision keeps its 4-byte fp32 master copy whatever the optimizer (12 = 4 master + 8 moments).
    optimizer = m.optimizer * ((4 + 8 * opt_scale) / 12 if s.method == "full" else opt_scale)
    return m.weights + m.gradients + optimizer + m.activations
