"""`tunesmith estimate` as one task: resolve the model, count the tokens, estimate, optionally probe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.advisor.estimate import Estimate, estimate, measure_cpu
from tunesmith.advisor.prices import load_prices
from tunesmith.advisor.tokens import given_workload, measure_workload
from tunesmith.errors import TunesmithError
from tunesmith.models.memory import Setup
from tunesmith.models.params import load_architecture


@dataclass(frozen=True)
class EstimateRequest:
    model: str
    method: str = "lora"
    data: Path | None = None
    examples: int | None = None
    avg_tokens: float | None = None
    epochs: float = 1.0
    gpus: list[str] = field(default_factory=list)
    batch_size: int = 1
    seq_len: int | None = None
    gradient_checkpointing: bool = False
    lora_r: int = 16
    mfu: float | None = None
    prices: Path | None = None
    probe: bool = False
    probe_steps: int = 3
    max_seq_len: int | None = None


def run_estimate(req: EstimateRequest) -> Estimate:
    """Parameters -> tokens -> estimate for every GPU (and this CPU) -> calibration by a probe."""
    arch = load_architecture(req.model)
    prices = load_prices(req.prices)
    workload = _workload(req)
    seq_len = req.seq_len or workload.max_tokens
    setup = Setup(
        method=req.method,
        batch_size=req.batch_size,
        seq_len=max(seq_len, 1),  # type: ignore[arg-type]
        gradient_checkpointing=req.gradient_checkpointing,
        lora_r=req.lora_r,
        mfu=req.mfu,
    )
    prices = _only_gpus(prices, req.gpus)
    want_cpu = not req.gpus or "cpu" in req.gpus or req.probe
    est = estimate(arch, setup, workload, prices, measure_cpu() if want_cpu else None)
    if req.probe:
        from tunesmith.advisor.probe import calibrate

        est = calibrate(est, req)
    return est


def _workload(req: EstimateRequest):
    if req.data is not None:
        return measure_workload(req.data, req.model, req.epochs, max_seq_len=req.max_seq_len)
    assert req.examples is not None and req.avg_tokens is not None
    return given_workload(req.examples, req.avg_tokens, req.epochs)


def _only_gpus(prices, names: list[str]):
    if not names:
        return prices
    wanted = [n for n in names if n != "cpu"]
    lower = {k.lower(): k for k in prices.gpus}
    picked = {}
    for n in wanted:
        key = lower.get(n.lower()) or next((v for k, v in lower.items() if k.startswith(n.lower())), None)
        if key is None:
            raise TunesmithError(
                f"Unknown GPU {n!r}.",
                f"Use one of {', '.join(prices.gpus)}, or cpu; add GPUs with --prices FILE.",
            )
        picked[key] = prices.gpus[key]
    return prices.model_copy(update={"gpus": picked})
