"""Translating tunesmith's config into peft objects, and building the trainable model.

The translation is a small pure function (``to_lora_config``) so it is unit-tested without weights.
``build_trainable`` loads the base as each ``finetune`` mode needs it:

- ``full``: every parameter trains (fp32 on CPU).
- ``lora``: frozen fp32 base + LoRA adapters.
- ``dora``: LoRA with weight decomposition (peft ``use_dora=True``).
- ``qlora``: the base is quantized to 4-bit NF4 by bitsandbytes (works on CPU too), then LoRA on top;
  ``prepare_model_for_kbit_training`` freezes the base and upcasts norms, as peft documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.config import Finetune, LoraConfig, ProjectConfig
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    import peft


def to_lora_config(lora: LoraConfig, finetune: Finetune, model: Any = None) -> peft.LoraConfig:
    """The peft ``LoraConfig`` for an adapter fine-tune (``full`` has none: asking for one is a bug).

    peft refuses ``layers_to_transform`` with the ``all-linear`` shortcut, so with ``model`` given the
    shortcut is expanded to the names of its linear layers (the head excluded, as peft's all-linear does)."""
    import peft

    if finetune == "full":
        raise ValueError("finetune: full trains every weight and has no LoRA config.")
    targets = lora.target_modules
    if lora.layers_to_transform is not None and targets == "all-linear":
        if model is None:
            raise TunesmithError(
                "lora.layers_to_transform needs explicit lora.target_modules here (not all-linear).",
                "List them, e.g. lora.target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj].",
            )
        targets = linear_module_names(model)
    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        layers_to_transform=lora.layers_to_transform,
        use_dora=finetune == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )


def _use_packed_attention(model: Any, attn: str) -> None:
    """``auto`` trains with per-example causal attention in packed rows (models/attention.py), except for
    models it would not reproduce exactly (a sliding window, logit soft-capping), which keep sdpa."""
    from tunesmith.models import attention

    if attn == "auto" and attention.supports(model.config):
        attention.register()
        model.set_attn_implementation(attention.NAME)


def build_trainable(cfg: ProjectConfig) -> Any:
    """The model in train mode with exactly the parameters ``cfg.train.finetune`` trains set to require grad.

    Seeds torch first, so adapter initialisation is reproducible."""
    import torch

    from tunesmith.models.load import load_causal_lm

    torch.manual_seed(cfg.train.seed)
    finetune = cfg.train.finetune
    attn = cfg.model.attn_implementation
    model = load_causal_lm(
        cfg.model.name,
        dtype=cfg.model.dtype,
        load_in_4bit=finetune == "qlora",
        attn_implementation=attn,
    )
    _use_packed_attention(model, attn)
    if finetune == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        if cfg.train.gradient_checkpointing is True:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        model.train()
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if finetune == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing is True
        )
    elif cfg.train.gradient_checkpointing is True:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # frozen embeddings: let checkpointed blocks see a grad-requiring input
    model.config.use_cache = False
    model = get_peft_model(model, to_lora_config(cfg.lora, finetune, model))
    model.train()
    return model


def trainable_state(model: Any) -> dict[str, Any]:
    """Name -> tensor for every parameter that trains (detached copies' sources; used by checkpoints)."""
    return {n: p for n, p in unwrap(model).named_parameters() if p.requires_grad}


def unwrap(model: Any) -> Any:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of the linear layers inside the decoder blocks (q_proj, ..., down_proj), sorted."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if (isinstance(mod, torch.nn.Linear) or "Linear" in type(mod).__name__) and mod is not head
    }
    return sorted(names - {"lm_head", "score"})
