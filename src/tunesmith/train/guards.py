"""Refusals before anything is loaded or written: will the run fit in memory?

The estimate is deliberately simple and errs high (fp32 on CPU):

- weights: 4 bytes/parameter (about 0.56 for a 4-bit NF4 base with double quantization);
- full fine-tuning adds gradients (4) and AdamW's two moments (8): 16 bytes/parameter in all;
  adapters add 16 bytes per *trainable* parameter (the LoRA matrices);
- activations kept for backward: ``batch_tokens x layers x hidden x 4 bytes x 20`` (about twenty
  hidden-sized tensors per layer and token: attention, MLP, norms; 1/layers of that with gradient
  checkpointing), plus one 128 MiB chunk of logits (``loss.py``);
- 600 MiB for the Python runtime, torch and the tokenizer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError

MiB = 1024 * 1024
_RUNTIME = 600 * MiB
_LOSS_CHUNK = 128 * MiB


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    optimizer: int
    activations: int
    runtime: int

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations + self.runtime


def estimate_training_memory(model_config: dict, n_params: int, cfg: ProjectConfig) -> MemoryEstimate:
    """Bytes needed to train ``cfg.train.finetune`` on a model with this config.json and parameter count."""
    t = cfg.train
    hidden = int(model_config.get("hidden_size", 1024))
    layers = int(model_config.get("num_hidden_layers", 24))
    inter = int(model_config.get("intermediate_size", 4 * hidden))
    weights = int(n_params * (0.56 if t.finetune == "qlora" else 4))
    if t.finetune == "full":
        optimizer = 12 * n_params
    else:
        per_layer = 4 * (2 * hidden) + 3 * (hidden + inter)  # q,k,v,o and gate,up,down, in + out dims
        optimizer = 16 * cfg.lora.r * per_layer * layers
    depth = 1 if t.gradient_checkpointing is True else layers
    activations = t.fixed("batch_tokens") * depth * hidden * 4 * 20 + _LOSS_CHUNK
    return MemoryEstimate(weights, optimizer, activations, _RUNTIME)


def check_memory(cfg: ProjectConfig, model_dir: Path, available: int | None = None) -> MemoryEstimate:
    """Refuse (TunesmithError with the estimate) when training would not fit in ``available`` bytes
    (default: what the machine or container has available now)."""
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    n_params = count_parameters(model_dir, model_config)
    est = estimate_training_memory(model_config, n_params, cfg)
    available = available if available is not None else available_memory()
    if available is not None and est.total > available:
        raise TunesmithError(
            f"Training {cfg.model.name} with finetune: {cfg.train.finetune} needs about {est.total / MiB:,.0f} MiB "
            f"(weights {est.weights / MiB:,.0f}, gradients+optimizer {est.optimizer / MiB:,.0f}, activations "
            f"{est.activations / MiB:,.0f}, runtime {est.runtime / MiB:,.0f}), but only {available / MiB:,.0f} MiB is available.",
            "Use finetune: lora or qlora, lower train.batch_tokens, set train.gradient_checkpointing: true, "
            "or pick a smaller model.",
        )
    return est


def count_parameters(model_dir: Path, model_config: dict) -> int:
    """Parameter count from the safetensors headers (no weights read); a config-based guess otherwise."""
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        n = 0
        for f in files:
            with safe_open(str(f), "pt") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    n += math.prod(fh.get_slice(key).get_shape())
        return n
    h = int(model_config.get("hidden_size", 1024))
    layers = int(model_config.get("num_hidden_layers", 24))
    return layers * 12 * h * h + int(model_config.get("vocab_size", 32000)) * h


def available_memory() -> int | None:
    """MemAvailable, capped by a cgroup (container) limit when there is one; None when unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path, used_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(path).read_text().strip()
            if raw != "max" and int(raw) < 1 << 60:
                found.append(int(raw) - int(Path(used_path).read_text().strip()))
        except (OSError, ValueError):
            continue
    return min(found) if found else None
