"""Memory, FLOPs, time and cost of a fine-tuning run, before running it.

``estimate(arch, setup, workload, prices)`` reads top to bottom: parameters -> memory per precision ->
fit per GPU -> FLOPs -> hours -> dollars (GPUs and fine-tuning APIs) -> serving cost and break-even.
Every formula is written beside the code that applies it and repeated in ``docs/advisor.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tunesmith.advisor.prices import PriceSheet
from tunesmith.models.memory import GB, Memory, Setup, memory, trainable_params
from tunesmith.models.params import Architecture


@dataclass(frozen=True)
class Workload:
    """How many tokens the run processes (the whole sequence is computed; loss masks save no FLOPs)."""

    examples: int
    avg_tokens: float
    max_tokens: int
    epochs: float
    avg_output_tokens: float
    source: str  # where the counts come from, said in the output

    @property
    def tokens(self) -> float:
        return self.examples * self.avg_tokens * self.epochs


@dataclass(frozen=True)
class GpuResult:
    name: str
    memory_gb: float
    fits: bool
    fits_with_checkpointing: bool
    headroom_gb: float  # memory left after the run (negative: short by this much)
    hours: float
    cost_usd: float


@dataclass(frozen=True)
class Serving:
    gpu: str
    tokens_per_s: float
    usd_per_1m_tokens: float
    gpu_usd_per_month: float
    frontier: str
    frontier_usd_per_request: float
    selfhost_usd_per_request: float
    breakeven_requests_per_month: float
    capacity_requests_per_month: float


@dataclass(frozen=True)
class Estimate:
    model: str
    setup: Setup
    workload: Workload
    params_total: int
    params_embedding: int
    params_trainable: int
    memory: Memory  # GPU, bf16 mixed precision
    memory_cpu: Memory  # this machine, fp32
    flops: float
    flops_formula: str
    gpus: list[GpuResult]
    api_costs: dict[str, float]
    serving: Serving | None
    assumptions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # filled by --probe
    fit_advice: list[Any] = field(default_factory=list)  # levers.FitAdvice per GPU of the sheet

    def to_json(self) -> dict[str, Any]:
        """The shape documented in the issue and in ``tunesmith estimate --help``."""
        m = self.memory
        return {
            "params": {"total": self.params_total, "trainable": self.params_trainable},
            "memory_gb": {
                "weights": round(m.weights, 3),
                "gradients": round(m.gradients, 3),
                "optimizer": round(m.optimizer, 3),
                "activations": round(m.activations, 3),
                "total": round(m.total, 3),
            },
            "fits": {g.name: g.fits for g in self.gpus},
            "fits_with": {a.gpu: a.to_json() for a in self.fit_advice},
            "flops": self.flops,
            "hours": {g.name: g.hours for g in self.gpus},
            "cost_usd": {
                **{g.name: round(g.cost_usd, 4) for g in self.gpus},
                **{k: round(v, 4) for k, v in self.api_costs.items()},
            },
        }


# --------------------------------------------------------------------------- the estimate


def estimate(
    arch: Architecture,
    setup: Setup,
    workload: Workload,
    prices: PriceSheet,
    cpu: dict[str, float] | None = None,
) -> Estimate:
    """The whole estimate. ``cpu`` = {"memory_gb", "peak_tflops"} of this machine (``measure_cpu()``)."""
    trainable = trainable_params(arch, setup)
    mem_gpu = memory(arch, setup, bytes_per_act=2, precision="mixed")
    mem_cpu = memory(arch, setup, bytes_per_act=4, precision="fp32")
    flops, formula = training_flops(arch, setup, workload)
    gpus = [
        _gpu_result(
            name,
            gpu.memory_gb,
            gpu.bf16_tflops,
            gpu.usd_per_hour,
            gpu.utilisation or setup.mfu or prices.assume("utilisation"),
            mem_gpu,
            setup,
            flops,
            prices,
        )
        for name, gpu in prices.gpus.items()
    ]
    if cpu is not None:
        gpus.append(
            _gpu_result(
                "cpu",
                cpu["memory_gb"],
                cpu["peak_tflops"],
                0.0,
                prices.assume("cpu_utilisation"),
                mem_cpu,
                setup,
                flops,
                prices,
                cuda=False,
            )
        )
    api = api_costs(arch, setup, workload, prices)
    from tunesmith.advisor.levers import fit_with_levers  # levers builds on this module's formulas

    advice = [fit_with_levers(arch, setup, workload, name, gpu, prices) for name, gpu in prices.gpus.items()]
    return Estimate(
        model=arch.name,
        setup=setup,
        workload=workload,
        params_total=arch.total,
        params_embedding=arch.embedding,
        params_trainable=trainable,
        memory=mem_gpu,
        memory_cpu=mem_cpu,
        flops=flops,
        flops_formula=formula,
        gpus=gpus,
        api_costs=api,
        serving=serving_breakeven(arch, workload, prices, gpus),
        assumptions={k: f"{v.value:g}: {v.source}" for k, v in prices.assumptions.items()},
        fit_advice=advice,
    )


def training_flops(arch: Architecture, setup: Setup, workload: Workload) -> tuple[float, str]:
    """FLOPs of the run. N = matmul parameters per token (non-embedding + output head, MoE: active
    experts), s = average sequence length, D = tokens processed, L = layers, q = attention width.
    Full: 6N + 6Lsq per token (Kaplan et al. 2020: forward 2N + 2Lsq, backward twice the forward).
    Adapters: the frozen base needs no weight gradients, only input gradients: 4N + 6Lsq + 6P
    (P = adapter parameters). Gradient checkpointing adds one more forward: + 2N + 2Lsq."""
    n = arch.active_matmul
    s = workload.avg_tokens
    att = arch.layers * s * arch.heads * arch.head_dim
    if setup.method == "full":
        per_token, f = 6 * n + 6 * att, "6N + 6·L·s·q"
    else:
        p = trainable_params(arch, setup)
        per_token, f = 4 * n + 6 * att + 6 * p, "4N + 6·L·s·q + 6P"
    if setup.gradient_checkpointing:
        per_token += 2 * n + 2 * att
        f += " + (2N + 2·L·s·q) recompute"
    return per_token * workload.tokens, f"FLOPs = ({f}) × D, D = {workload.tokens:,.0f} tokens"


def _gpu_result(
    name: str,
    mem_gb: float,
    tflops: float,
    usd_per_hour: float,
    util: float,
    mem: Memory,
    setup: Setup,
    flops: float,
    prices: PriceSheet,
    cuda: bool = True,
) -> GpuResult:
    ctx = prices.assume("cuda_context_gb") if cuda else 0.0
    frag = prices.assume("fragmentation")
    need = mem.total * (1 + frag) + ctx
    need_ckpt = (mem.total - mem.activations + min(mem.activations, mem.activations_other)) * (1 + frag) + ctx
    slowdown = {"qlora": prices.assume("qlora_slowdown"), "dora": prices.assume("dora_slowdown")}.get(
        setup.method, 1.0
    )
    hours = flops / (tflops * 1e12 * util) / 3600 * slowdown
    return GpuResult(
        name=name,
        memory_gb=mem_gb,
        fits=need <= mem_gb,
        fits_with_checkpointing=need_ckpt <= mem_gb,
        headroom_gb=mem_gb - need,
        hours=hours,
        cost_usd=hours * usd_per_hour,
    )


def api_costs(arch: Architecture, setup: Setup, workload: Workload, prices: PriceSheet) -> dict[str, float]:
    """Dollars to fine-tune through hosted APIs: billed training tokens (file tokens x epochs) x price.
    OpenAI entries tune OpenAI's own model (an alternative, not this model); Together tunes this model's
    size class, with its LoRA tier for adapters and its full tier for full fine-tuning."""
    out: dict[str, float] = {}
    for name, api in prices.api_finetuning.items():
        if name.startswith("together/") and name != (
            "together/full" if setup.method == "full" else "together/lora"
        ):
            continue
        price = api.training_price(arch.total)
        if price is not None:
            out[name] = workload.tokens / 1e6 * price
    return out


def serving_breakeven(
    arch: Architecture, workload: Workload, prices: PriceSheet, gpus: list[GpuResult]
) -> Serving | None:
    """Self-hosting the fine-tuned model on the cheapest GPU that holds it (bf16 weights + 20% KV cache)
    vs. prompting the most expensive frontier API in the sheet. Decode throughput is the lower of the
    memory-bound rate (bandwidth x serving utilisation / weight bytes x concurrency) and the compute-bound
    rate (peak x utilisation / 2N). Break-even: requests per month at which the GPU's monthly cost equals
    the API bill; below it, the API is cheaper."""
    weight_bytes = arch.total * 2
    ctx = prices.assume("cuda_context_gb")
    candidates = [
        (g.usd_per_hour, name, g)
        for name, g in prices.gpus.items()
        if weight_bytes * 1.2 / GB + ctx <= g.memory_gb
    ]
    if not candidates or not prices.frontier_apis:
        return None
    _, gname, gpu = min(candidates, key=lambda c: (c[0], c[1]))
    conc = prices.assume("serving_concurrency")
    mem_rate = gpu.bandwidth_gbps * GB * prices.assume("serving_utilisation") / weight_bytes * conc
    compute_rate = gpu.bf16_tflops * 1e12 * prices.assume("utilisation") / (2 * arch.active_matmul)
    tps = min(mem_rate, compute_rate)
    month = gpu.usd_per_hour * prices.assume("hours_per_month")
    fname, api = max(prices.frontier_apis.items(), key=lambda kv: kv[1].usd_per_1m_output)
    tin = max(workload.avg_tokens - workload.avg_output_tokens, 0.0)
    tout = workload.avg_output_tokens
    api_req = (tin * api.usd_per_1m_input + tout * api.usd_per_1m_output) / 1e6
    # Prompted APIs need instructions + examples that a fine-tuned model has learnt: count the prompt 3x.
    api_req_prompted = api_req + 2 * tin * api.usd_per_1m_input / 1e6
    usd_per_1m = gpu.usd_per_hour / (tps * 3600) * 1e6
    self_req = usd_per_1m * tout / 1e6
    capacity = tps * 3600 * prices.assume("hours_per_month") / max(tout, 1.0)
    breakeven = month / api_req_prompted if api_req_prompted > 0 else math.inf
    return Serving(
        gpu=gname,
        tokens_per_s=tps,
        usd_per_1m_tokens=usd_per_1m,
        gpu_usd_per_month=month,
        frontier=fname,
        frontier_usd_per_request=api_req_prompted,
        selfhost_usd_per_request=self_req,
        breakeven_requests_per_month=breakeven,
        capacity_requests_per_month=capacity,
    )


def measure_cpu() -> dict[str, float]:
    """This machine's RAM and a measured fp32 matmul peak (TFLOPS), ~0.3 s."""
    import time

    import psutil
    import torch

    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    torch.mm(a, b)  # warm-up
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        torch.mm(a, b)
        reps += 1
    secs = time.perf_counter() - start
    return {"memory_gb": psutil.virtual_memory().total / GB, "peak_tflops": 2 * 1024**3 * reps / secs / 1e12}
