"""Training memory of one process, from a model's architecture (``models/params.py``) and the setup.

Used before a run by the advisor (``advisor/estimate.py``: fit per GPU, the lever table) and at the start of
a run by the training plan (``train/plan.py``: micro-batch and gradient checkpointing within the memory
budget), so both read the same formulas. Each formula is written beside the code that applies it and
repeated in ``docs/advisor.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunesmith.models.params import Architecture

Method = Literal["full", "lora", "qlora", "dora"]
GB = 1e9
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # NF4 + double-quantized absmax (QLoRA paper, section 3): 4.127 bits
# Resident bytes per byte of activations saved for backward, by the CPU process's allocator. glibc malloc keeps
# freed activation blocks in a heap that fragments (it raises its mmap threshold as blocks are freed), so a
# training step's activations are resident about twice: measured on SmolLM2-135M LoRA 1.85x (476-token
# forward: +1.09 GB RSS for 0.59 GB saved), 1.92x (1,019 tokens: +2.3 GB for 1.2 GB, tunesmith/allocator.py),
# 2.16x (DPO, one 1,130-token pair per micro-batch: 4.52 GB peak over a 1.35 GB fixed part). jemalloc
# reuses and returns them: 1.0 (the intent acceptance run: 2.02 GB estimated, 1.95 GB measured, bench/README).
ALLOCATOR_RETENTION = {"jemalloc": 1.0, "system": 2.0}


@dataclass(frozen=True)
class Setup:
    method: Method
    batch_size: int = 1  # sequences per micro-batch (activations scale with batch_size * seq_len)
    seq_len: int = 1024
    gradient_checkpointing: bool = False
    lora_r: int = 16
    lora_targets: list[str] | str = "all-linear"
    mfu: float | None = None  # overrides the sheet's utilisation


@dataclass(frozen=True)
class Memory:
    """Bytes (as GB) of one training process; ``total`` = the sum of the parts."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    activations_other: float  # the same with gradient checkpointing flipped, for the table
    lora: float  # adapter weights, part of ``weights``

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def trainable_params(arch: Architecture, setup: Setup) -> int:
    if setup.method == "full":
        return arch.total
    return arch.lora_params(setup.lora_r, setup.lora_targets, dora=setup.method == "dora")


def memory(
    arch: Architecture, setup: Setup, bytes_per_act: int, precision: Literal["mixed", "fp32"]
) -> Memory:
    """Training memory. Mixed precision (GPU): bf16 weights and gradients, fp32 master copy + Adam m and v
    (2 + 2 + 12 = 16 bytes per trained parameter, ZeRO paper section 3.1). fp32 (CPU): 4 + 4 + 8 = 16.
    Adapters train in fp32 (peft upcasts them): 4 + 4 + 8 bytes per adapter parameter, the frozen base
    costs its storage only (bf16 2 bytes; QLoRA: NF4 linear layers, bf16 embeddings/head/norms)."""
    n = arch.total
    wbytes = 2 if precision == "mixed" else 4
    lora_params = trainable_params(arch, setup) if setup.method != "full" else 0
    if setup.method == "full":
        weights = n * wbytes
        gradients = n * wbytes
        optimizer = n * (12 if precision == "mixed" else 8)
        lora = 0.0
    else:
        if setup.method == "qlora":
            base = arch.linear_params * NF4_BITS / 8 + (n - arch.linear_params) * wbytes
        else:
            base = n * wbytes
        lora = lora_params * 4
        weights = base + lora
        gradients = lora_params * 4
        optimizer = lora_params * 8
    acts = activation_bytes(arch, setup, bytes_per_act, setup.gradient_checkpointing)
    other = activation_bytes(arch, setup, bytes_per_act, not setup.gradient_checkpointing)
    return Memory(weights / GB, gradients / GB, optimizer / GB, acts / GB, other / GB, lora / GB)


def allocator_retention(allocator: str) -> float:
    """Resident bytes per saved activation byte on a CPU for ``allocator`` (``jemalloc`` or ``system``, as
    ``train.runs.allocator_in_use`` names them); see ``ALLOCATOR_RETENTION``. An unknown name is priced as
    ``system`` (the larger)."""
    return ALLOCATOR_RETENTION.get(allocator, ALLOCATOR_RETENTION["system"])


def activation_bytes(arch: Architecture, setup: Setup, a: int, checkpointing: bool) -> float:
    """Activations kept for backward, per micro-batch of ``batch_size * seq_len`` tokens.

    Per layer and token (elements): the two norm inputs and outputs (4h), q/k/v projections and their
    rotary copies of q and k, attention output: 3q + 3kv, MLP gate/up/act/product (4i, gated; 2i plain),
    adapter bottlenecks (r per adapted matrix). SDPA/flash attention keeps no s x s matrix. With gradient
    checkpointing only each layer's input (h) is kept, plus one layer's full set during recompute.
    The loss adds the logits (a bytes) + their fp32 copy and its gradient (4 + 4 bytes) per vocab entry."""
    t = setup.batch_size * setup.seq_len
    h, q, kv = arch.hidden, arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    gated = any(lin.name == "gate_proj" for lin in arch.linears)
    mlp = (4 if gated else 2) * arch.intermediate * arch.experts_active
    adapters = 0 if setup.method == "full" else setup.lora_r * len(arch.linears)
    per_layer = 4 * h + 3 * q + 3 * kv + mlp + adapters  # q, k, v + roped q, k + attention output
    layers = arch.layers * h + per_layer if checkpointing else arch.layers * per_layer
    logits = arch.vocab * ((a + 4 + 4) if a == 2 else (4 + 4))
    dequant = 0.0
    if setup.method == "qlora":  # one dequantized weight matrix alive at a time
        dequant = max(lin.fan_in * lin.fan_out for lin in arch.linears) * 2
    return t * (layers * a + logits) + dequant


def inference_bytes(
    arch: Architecture, *, copies: int, batch: int, tokens: int, weight_bytes: int = 4
) -> float:
    """Bytes to answer with ``copies`` models held at once (``tunesmith eval`` keeps the base for the
    baselines and a second copy under the adapter): their weights (``weight_bytes`` per parameter: fp32 on
    CPU), the KV cache of one batch of ``batch`` x ``tokens`` (2 x layers x kv_heads x head_dim values per
    token) and the fp32 logits of a full forward over that batch (label scoring reads every position)."""
    weights = copies * arch.total * weight_bytes
    kv = batch * tokens * 2 * arch.layers * arch.kv_heads * arch.head_dim * weight_bytes
    logits = batch * tokens * arch.vocab * 4
    return float(weights + kv + logits)
