"""The run's plan, made before the first step (sft/cpt): a schedule chosen from the data, and a memory
plan chosen from a budget. The whole rule is in docs/training.md ("Defaults that learn", "Memory plan");
every number a user did not set comes from here, and the run prints and records the plan.

Schedule (``choose_schedule``), for each ``train.*`` field left at ``auto``/None:

- **effective batch** ``batch_size``: 8 examples per optimizer step up to 1,000 training examples, 16 up to
  20,000, 32 beyond (x ``grad_accum``). 8 is TRL's ``SFTConfig`` per-device default; 16 the QLoRA paper's
  batch for its small data sets (Dettmers et al. 2023, appendix B.2); small sets need many small steps
  (issue 20: 22 steps of ~45 examples learnt an intent set to 0.54, 90 steps of ~5 to 0.82).
- **epochs**: enough passes for ``MIN_STEPS`` (150) optimizer steps, between 1 and ``MAX_EPOCHS`` (6).
  A few hundred rows get 4-6 epochs; 2,400+ rows at batch 16 get one.
- **lr**: adapters (lora, qlora, dora) 5e-4 below 1B parameters (LoRA paper, Hu et al. 2021, appendix D:
  4e-4 - 5e-4 for RoBERTa-base, 125M), 2e-4 up to 30B (QLoRA paper: 7B-13B), 1e-4 beyond (QLoRA: 33B-65B);
  full fine-tuning 2e-5 (1e-5 beyond 30B).
- **warmup**: 5% of the steps (QLoRA used 3%, TRL 0 - 10%), at least 5 steps when the run has 50 or more.

Memory plan (``plan_memory``): budget = ``train.memory_budget_gb`` or ``auto`` (60% of the RAM available
at start on CPU, 85% of free GPU memory). The advisor's memory formulas (models/memory.py) give the fixed part
(weights, gradients, optimizer state, plus the runtime) and the activations per micro-batch token; the
micro-batch is the largest that fits, capped where more tokens stop paying (CPU 512: 0.92x the speed of
1,024-token micro-batches at 0.64x the peak memory, bench/README.md lever table; GPU 16,384). When even one
example of ``data.max_seq_len`` tokens does not fit, gradient checkpointing is turned on (if
``train.gradient_checkpointing`` is auto); when it still does not fit, the run is refused before any data
is read, with the settings that would fit. The micro-batch never changes what an optimizer step contains,
so the losses are the same whatever the budget (token-weighted accumulation, train/loop.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError

GB = 1e9
MIN_STEPS = 150
MAX_EPOCHS = 6
CPU_BUDGET_FRACTION = 0.60
GPU_BUDGET_FRACTION = 0.85
SPEED_CAP = {"cpu": 512, "cuda": 16384}
CPU_RUNTIME = 0.6 * GB  # Python, torch, transformers, the tokenizer (measured: ~0.55 GB before the model)
LOSS_CHUNK = 128 * 2**20  # one chunk of logits in loss.py
GPU_CONTEXT = 0.5 * GB
REPLAN_TOLERANCE = 0.25  # measured activations per token this far from the estimate re-plan once


@dataclass(frozen=True)
class Schedule:
    """What one optimizer step holds and how many there are."""

    examples_per_step: int | None  # None: token-sized steps (grad_accum micro-batches of train.batch_tokens)
    epochs: float
    steps_per_epoch: int
    total_steps: int
    lr: float
    warmup_steps: int
    rule: dict[str, str]  # field -> where its value comes from ("config" or the rule, in words)


@dataclass(frozen=True)
class MemoryPlan:
    """Micro-batch size and gradient checkpointing for a memory budget. Bytes; ``estimate`` = fixed +
    per_token x micro_tokens."""

    device: str  # cpu | cuda
    budget: float
    budget_source: str
    fixed: float  # weights + gradients + optimizer state + runtime
    per_token: float  # activations kept for backward, per micro-batch token
    micro_tokens: int
    gradient_checkpointing: bool
    reason: str  # what bounded micro_tokens
    state: float = 0.0  # gradients + optimizer state (part of fixed; allocated by the first step)
    measured_peak: float | None = None
    replanned_from: int | None = None  # the micro_tokens of the first plan, when the measurement re-planned
    oom_retries: int = 0
    distributed: str = "single"  # single | ddp | fsdp: how --nproc N processes share the model
    distributed_reason: str = ""

    @property
    def estimate(self) -> float:
        return self.fixed + self.per_token * self.micro_tokens


@dataclass(frozen=True)
class TrainPlan:
    """Schedule + memory plan of a run (what ``fit`` follows)."""

    schedule: Schedule
    memory: MemoryPlan
    longest: int  # tokens of the longest training example
    step_tokens: int  # tokens of the biggest optimizer step of epoch 0


def make_plan(cfg: ProjectConfig, train: list[Any], world: int = 1, device: str | None = None) -> TrainPlan:
    """The plan for training ``cfg`` on the tokenized ``train`` examples with ``world`` processes.

    Raises:
        TunesmithError: when the budget cannot hold the longest example (``plan_memory``).
    """
    from tunesmith.models.params import load_architecture
    from tunesmith.train.packing import build_steps

    t = cfg.train
    arch = load_architecture(cfg.model.name)
    per_step, per_rule = examples_per_step(cfg, len(train))
    steps = build_steps(
        train, examples_per_step=per_step, batch_tokens=t.fixed("batch_tokens"), window=t.grad_accum * world,
        packing=t.packing, seed=t.seed, epoch=0,
    )  # fmt: skip
    schedule = choose_schedule(cfg, len(train), len(steps), arch.total, per_step, per_rule)
    longest = max((len(ex.input_ids) for ex in train), default=1)
    step_tokens = max((sum(len(ex.input_ids) for g in s for ex in g) for s in steps), default=longest)
    per_process = math.ceil(step_tokens / world)
    mem = plan_processes(cfg, arch, device or training_device(), longest, per_process, world)
    return TrainPlan(schedule, mem, longest, step_tokens)


# --------------------------------------------------------------------------- schedule


def examples_per_step(cfg: ProjectConfig, n_examples: int) -> tuple[int | None, str]:
    """Examples per optimizer step (None: token-sized steps) and where the number comes from."""
    t = cfg.train
    if t.batch_size != "auto":
        return t.batch_size * t.grad_accum, "config (train.batch_size x train.grad_accum)"
    if t.batch_tokens != "auto":
        return (
            None,
            f"config: train.grad_accum ({t.grad_accum}) micro-batches of train.batch_tokens ({t.batch_tokens})",
        )
    base = 8 if n_examples <= 1_000 else 16 if n_examples <= 20_000 else 32
    return (
        base * t.grad_accum,
        f"rule: {base} examples per step for {n_examples:,} examples (x grad_accum {t.grad_accum})",
    )


def choose_schedule(
    cfg: ProjectConfig,
    n_examples: int,
    steps_per_epoch: int,
    n_params: int,
    per_step: int | None,
    per_step_rule: str,
) -> Schedule:
    """The schedule of ``cfg`` for ``n_examples`` training examples cut into ``steps_per_epoch`` steps."""
    t = cfg.train
    rule = {"batch_size": per_step_rule}
    if t.epochs != "auto":
        epochs, rule["epochs"] = float(t.epochs), "config"
    else:
        epochs = float(min(max(1, math.ceil(MIN_STEPS / max(steps_per_epoch, 1))), MAX_EPOCHS))
        rule["epochs"] = f"rule: >= {MIN_STEPS} steps ({steps_per_epoch} per epoch), 1-{MAX_EPOCHS} epochs"
    total = t.max_steps or max(1, math.ceil(epochs * steps_per_epoch))
    if t.max_steps:
        rule["total_steps"] = "config (train.max_steps)"
    lr, rule["lr"] = (t.lr, "config") if t.lr is not None else _rule_lr(t.finetune, n_params)
    if t.warmup_ratio != "auto":
        warmup, rule["warmup"] = round(t.warmup_ratio * total), "config (train.warmup_ratio)"
    else:
        warmup = max(round(0.05 * total), 5 if total >= 50 else 0)
        rule["warmup"] = "rule: 5% of the steps, at least 5 when there are 50 or more"
    return Schedule(per_step, epochs, steps_per_epoch, total, lr, warmup, rule)


def planned_epochs(cfg: ProjectConfig, n_examples: int) -> float:
    """The epochs a sft/cpt run of ``cfg`` on ``n_examples`` examples will take (train.epochs, or the rule
    with example-sized steps), for estimates made before the data is tokenized (the advisor)."""
    if cfg.train.epochs != "auto":
        return float(cfg.train.epochs)
    per_step = examples_per_step(cfg, n_examples)[0] or 8
    steps = max(math.ceil(n_examples / per_step), 1)
    return float(min(max(1, math.ceil(MIN_STEPS / steps)), MAX_EPOCHS))


def _rule_lr(finetune: str, n_params: int) -> tuple[float, str]:
    size = f"{n_params / 1e6:,.{0 if n_params >= 1e7 else 2}f}M parameters"
    if finetune == "full":
        lr = 1e-5 if n_params > 30e9 else 2e-5
        return lr, f"rule: full fine-tuning of {size}: {lr:g}"
    lr = 5e-4 if n_params < 1e9 else 2e-4 if n_params <= 30e9 else 1e-4
    return lr, f"rule: adapters on {size}: {lr:g} (LoRA/QLoRA papers)"


# --------------------------------------------------------------------------- memory


def memory_budget(cfg: ProjectConfig, device: str) -> tuple[float, str]:
    """Bytes the run may use and where the number comes from.

    Raises:
        TunesmithError: when ``auto`` cannot find out how much memory is free.
    """
    value = cfg.train.memory_budget_gb
    if value != "auto":
        return float(value) * GB, f"train.memory_budget_gb: {value:g}"
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return (
            free * GPU_BUDGET_FRACTION,
            f"auto: {GPU_BUDGET_FRACTION:.0%} of {free / GB:.1f} GB free GPU memory",
        )
    from tunesmith.train.guards import available_memory

    avail = available_memory()
    if avail is None:
        raise TunesmithError(
            "train.memory_budget_gb is auto but this system does not say how much memory is available.",
            "Set train.memory_budget_gb to the GB the run may use, e.g. train.memory_budget_gb=4.",
        )
    return (
        avail * CPU_BUDGET_FRACTION,
        f"auto: {CPU_BUDGET_FRACTION:.0%} of {avail / GB:.1f} GB available RAM",
    )


def memory_parts(
    cfg: ProjectConfig, arch: Any, device: str, checkpointing: bool, shards: int = 1
) -> tuple[float, float, float]:
    """(fixed bytes, activation bytes per token, gradient + optimizer bytes within fixed) from the memory formulas (models/memory.py): fp32 on
    CPU, bf16 mixed precision on a GPU. The logits term is replaced by one loss chunk: the loop computes
    logits only at trained positions, a chunk at a time (loss.py). On a CPU the activations are priced at
    what this process's allocator keeps resident (``models.memory.allocator_retention``: x2 on glibc
    malloc, which is what DPO's 4.52 GB against a 2.8 GB estimate was; x1 on jemalloc)."""
    from tunesmith.models.memory import Setup, activation_bytes, allocator_retention, memory
    from tunesmith.train.runs import allocator_in_use

    targets = cfg.lora.target_modules
    setup = Setup(cfg.train.finetune, 1, 1, checkpointing, cfg.lora.r, targets)
    mixed = device == "cuda"
    mem = memory(arch, setup, 2 if mixed else 4, "mixed" if mixed else "fp32")
    a = 2 if mixed else 4
    one = activation_bytes(arch, setup, a, checkpointing)
    two = activation_bytes(arch, replace(setup, seq_len=2), a, checkpointing)
    logits = arch.vocab * ((a + 8) if mixed else 8)
    per_token = two - one - logits
    dequant = one - per_token - logits
    if not mixed:  # the CPU allocator keeps freed activations resident: x2 on glibc, x1 on jemalloc
        per_token *= allocator_retention(allocator_in_use())
    runtime = GPU_CONTEXT if mixed else CPU_RUNTIME
    state = (mem.gradients + mem.optimizer) * GB
    weights = mem.weights * GB
    if shards > 1:
        weights, state = sharded_parts(arch, weights, state, shards, 2 if mixed else 4)
    fixed = weights + state + dequant + LOSS_CHUNK + runtime
    return fixed, per_token, state


def sharded_parts(
    arch: Any, weights: float, state: float, shards: int, dtype_bytes: int
) -> tuple[float, float]:
    """(weights, gradients + optimizer) bytes of one of ``shards`` FSDP2 processes (train/distributed.py):
    1/shards of each, plus what is gathered at once: the embeddings and head (the root group, gathered for
    the whole step) and two decoder blocks (the one running and the one prefetched)."""
    embed = (arch.embedding + arch.lm_head) * dtype_bytes
    block = max(weights - embed, 0.0) / max(arch.layers, 1)
    return weights / shards + embed + 2 * block, state / shards


def plan_processes(
    cfg: ProjectConfig, arch: Any, device: str, longest: int, step_tokens: int | None, world: int
) -> MemoryPlan:
    """The memory plan of one of ``world`` processes and how they share the model (``distributed``):
    ``train.distributed`` ddp (a whole copy each) or fsdp (sharded, ``sharded_parts``); auto: ddp when a
    whole copy fits the budget, else fsdp (sft/cpt, not qlora). One process is ``single`` whatever is set.

    Raises:
        TunesmithError: see ``plan_memory`` (for fsdp, with the sharded estimate).
    """
    choice = cfg.train.distributed
    if world == 1:
        return plan_memory(cfg, arch, device, longest, step_tokens)
    if choice == "fsdp":
        mem = plan_memory(cfg, arch, device, longest, step_tokens, shards=world)
        return replace(mem, distributed="fsdp", distributed_reason="train.distributed: fsdp")
    try:
        mem = plan_memory(cfg, arch, device, longest, step_tokens)
        why = "train.distributed: ddp" if choice == "ddp" else "auto: a whole copy fits each process's budget"
        return replace(mem, distributed="ddp", distributed_reason=why)
    except TunesmithError:
        if choice == "ddp" or cfg.train.method not in ("sft", "cpt") or cfg.train.finetune == "qlora":
            raise
    mem = plan_memory(cfg, arch, device, longest, step_tokens, shards=world)
    why = f"auto: a whole copy does not fit each process's budget; sharded over {world} processes it does"
    return replace(mem, distributed="fsdp", distributed_reason=why)


def plan_memory(
    cfg: ProjectConfig,
    arch: Any,
    device: str,
    longest: int,
    step_tokens: int | None = None,
    shards: int = 1,
) -> MemoryPlan:
    """The micro-batch for ``cfg``'s budget: the largest that fits, at least ``longest`` tokens (one example
    is never split), at most the device's speed cap and ``step_tokens`` (a whole optimizer step); with
    ``shards`` > 1, for one process of an FSDP run (``sharded_parts``).

    Raises:
        TunesmithError: when one example of ``longest`` tokens does not fit even with gradient
        checkpointing, naming the estimate and the settings that would fit.
    """
    budget, source = memory_budget(cfg, device)
    choice = cfg.train.gradient_checkpointing
    options = [False, True] if choice == "auto" else [bool(choice)]
    for ckpt in options:
        fixed, per_token, state = memory_parts(cfg, arch, device, ckpt, shards)
        if fixed + per_token * longest > budget:
            continue
        fits = int((budget - fixed) / per_token)
        if cfg.train.batch_tokens != "auto":  # an explicit micro-batch is honoured where it fits
            want, why = int(cfg.train.batch_tokens), "train.batch_tokens"
        else:
            want, why = SPEED_CAP[device], f"speed cap ({device})"
            if step_tokens is not None and step_tokens < want:
                want, why = step_tokens, "one optimizer step"
        micro, reason = (want, why) if want <= fits else (fits, "budget")
        return MemoryPlan(device, budget, source, fixed, per_token, max(micro, longest), ckpt, reason, state)
    raise _refusal(cfg, arch, device, budget, source, longest, shards)


def check_budget(cfg: ProjectConfig, device: str | None = None, world: int = 1) -> MemoryPlan:
    """Before any data is read: refuse a budget that cannot hold one example of ``data.max_seq_len`` tokens
    (in each of ``world`` processes, sharded where ``plan_processes`` would shard).

    Raises:
        TunesmithError: see ``plan_memory``.
    """
    from tunesmith.models.params import load_architecture

    device = device or training_device()
    arch = load_architecture(cfg.model.name)
    return plan_processes(cfg, arch, device, cfg.data.max_seq_len, None, world)


def _refusal(
    cfg: ProjectConfig, arch: Any, device: str, budget: float, source: str, longest: int, shards: int = 1
) -> TunesmithError:
    ckpt = cfg.train.gradient_checkpointing is not False
    fixed, per_token, _ = memory_parts(cfg, arch, device, ckpt, shards)
    need = fixed + per_token * longest
    fits: list[str] = [f"train.memory_budget_gb={math.ceil(need / GB * 10) / 10:g}"]
    if budget > fixed + per_token * 16:
        fits.append(f"data.max_seq_len={int((budget - fixed) / per_token)}")
    for other in ("qlora", "lora"):
        if other != cfg.train.finetune and cfg.train.finetune not in ("qlora",):
            alt = cfg.model_copy(update={"train": cfg.train.model_copy(update={"finetune": other})})
            f2, p2, _ = memory_parts(alt, arch, device, True)
            if f2 + p2 * longest <= budget:
                fits.append(f"train.finetune={other} train.gradient_checkpointing=true")
                break
    if not ckpt:
        fits.append("train.gradient_checkpointing=auto")
    return TunesmithError(
        f"The memory budget ({budget / GB:.2f} GB, {source}) cannot hold one example of {longest} tokens for "
        f"{cfg.model.name} with finetune: {cfg.train.finetune}: about {need / GB:.2f} GB (fixed {fixed / GB:.2f} GB: "
        f"weights, gradients, optimizer, runtime; activations {per_token * longest / GB:.2f} GB"
        f"{', with gradient checkpointing' if ckpt else ''}).",
        "Settings that fit: " + "; ".join(fits) + ".",
    )


def training_device() -> str:
    """cuda when a GPU is visible, else cpu (the device the loop trains on)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- measurement


class PeakMeter:
    """Peak memory of this process since ``reset``: VmHWM (reset through /proc/self/clear_refs) on CPU,
    ``torch.cuda.max_memory_reserved`` on a GPU. ``baseline`` is the memory in use at the reset."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline = 0.0

    def reset(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.baseline = float(torch.cuda.memory_reserved())
            return
        try:  # "5" resets the peak resident set size (Linux >= 4.0, proc(5))
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
        self.baseline = _status_bytes("VmRSS") or 0.0

    def peak(self) -> float | None:
        if self.device == "cuda":
            import torch

            return float(torch.cuda.max_memory_reserved())
        return _status_bytes("VmHWM")


def _status_bytes(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def replan(
    plan: MemoryPlan, peak: float, baseline: float, tokens: int, step_tokens: int | None
) -> MemoryPlan:
    """The plan corrected by a measured ``peak`` over micro-batches of up to ``tokens`` tokens, starting from
    ``baseline`` bytes in use before the first step (the loop calls this once, after the first steps).

    The measured activations per token, ``(peak - baseline - gradients/optimizer) / tokens``, replace the
    estimate, and the micro-batch is chosen again when the corrected estimate at the current micro-batch
    passes the budget, or when the budget bounded the micro-batch and the measurement is more than
    ``REPLAN_TOLERANCE`` off (so a larger one may fit). Otherwise only the measured peak is recorded."""
    measured = replace(plan, measured_peak=peak)
    if tokens < 64 or not baseline:
        return measured  # too small a micro-batch to tell activations from noise, or no baseline
    per_token = max((peak - baseline - plan.state) / tokens, plan.per_token * 0.25)
    fixed = baseline + plan.state
    over = fixed + per_token * plan.micro_tokens > plan.budget
    off = abs(per_token - plan.per_token) / plan.per_token > REPLAN_TOLERANCE
    if not over and not (off and plan.reason == "budget"):
        return measured
    fits = int((plan.budget - fixed) / per_token)
    cap = SPEED_CAP[plan.device] if plan.reason != "train.batch_tokens" else plan.micro_tokens
    micro = max(min(fits, cap, step_tokens or cap), 16)
    if micro == plan.micro_tokens:
        return measured
    return replace(
        measured, per_token=per_token, fixed=fixed, micro_tokens=micro, replanned_from=plan.micro_tokens,
        reason="measured peak",
    )  # fmt: skip


def describe(schedule: Schedule, mem: MemoryPlan) -> dict[str, Any]:
    """The plan as printed and recorded in the run summary (GB rounded to 0.01)."""
    out: dict[str, Any] = dict(asdict(schedule))
    out["memory"] = {
        "device": mem.device,
        "budget_gb": round(mem.budget / GB, 2),
        "budget_source": mem.budget_source,
        "micro_tokens": mem.micro_tokens,
        "micro_tokens_reason": mem.reason,
        "gradient_checkpointing": mem.gradient_checkpointing,
        "estimate_gb": round(mem.estimate / GB, 2),
        "measured_peak_gb": None if mem.measured_peak is None else round(mem.measured_peak / GB, 2),
        "replanned_from": mem.replanned_from,
        "oom_retries": mem.oom_retries,
        "distributed": mem.distributed,
        "distributed_reason": mem.distributed_reason,
    }
    return out
