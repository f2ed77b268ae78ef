"""Parameter counts from a Hugging Face ``config.json`` (no weights needed), or a built-in size class.

The count is exact for decoder-only transformers of the Llama family (Llama, Mistral, Qwen2/3, SmolLM,
Gemma, Phi-3, Mixtral-style MoE) and for GPT-2-style models: it is checked in the tests against the
safetensors of the tiny model and SmolLM2, and against the published counts of the built-in classes.
Embedding parameters (input embeddings, learned positions) are reported apart: they cost memory but
almost no compute (a lookup), so FLOPs use the non-embedding count plus the output head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

# Architectures of the size classes the issue names, copied from the public config.json of each model
# (hidden, layers, MLP width, heads, KV heads, vocab, tied embeddings). `published` is the parameter count
# on the model card / safetensors index, used by the tests to check the formula.
BUILTIN: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": dict(
        model_type="llama",
        hidden_size=2048,
        num_hidden_layers=16,
        intermediate_size=8192,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
        published=1_235_814_400,
    ),
    "llama-3.2-3b": dict(
        model_type="llama",
        hidden_size=3072,
        num_hidden_layers=28,
        intermediate_size=8192,
        num_attention_heads=24,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
        published=3_212_749_824,
    ),
    "llama-2-7b": dict(
        model_type="llama",
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=11008,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        tie_word_embeddings=False,
        published=6_738_415_616,
    ),
    "mistral-7b": dict(
        model_type="mistral",
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
        published=7_241_732_096,
    ),
    "llama-3.1-8b": dict(
        model_type="llama",
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
        published=8_030_261_248,
    ),
    "llama-2-13b": dict(
        model_type="llama",
        hidden_size=5120,
        num_hidden_layers=40,
        intermediate_size=13824,
        num_attention_heads=40,
        num_key_value_heads=40,
        vocab_size=32000,
        tie_word_embeddings=False,
        published=13_015_864_320,
    ),
    "llama-2-70b": dict(
        model_type="llama",
        hidden_size=8192,
        num_hidden_layers=80,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
        published=68_976_648_192,
    ),
    "llama-3.1-70b": dict(
        model_type="llama",
        hidden_size=8192,
        num_hidden_layers=80,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
        published=70_553_706_496,
    ),
}
# Size-class shorthands (the 1B / 3B / 7-8B / 13B / 70B classes): Llama-3.2 for 1B/3B, Llama-3.1 for 8B,
# Llama-2 for 7B/13B/70B (the models the published memory figures were measured on).
CLASS_ALIASES = {
    "1b": "llama-3.2-1b",
    "3b": "llama-3.2-3b",
    "7b": "llama-2-7b",
    "8b": "llama-3.1-8b",
    "13b": "llama-2-13b",
    "70b": "llama-2-70b",
}

_NON_GATED = {"gpt2", "gpt_neox", "opt", "falcon", "phi", "gpt_bigcode", "bloom", "gptj", "starcoder2"}
_GPT2_LIKE = {"gpt2", "gpt_bigcode"}


@dataclass(frozen=True)
class Linear:
    """One weight matrix of a transformer block (the modules LoRA can adapt)."""

    name: str
    fan_in: int
    fan_out: int
    count: int = 1  # how many copies per layer (MoE experts)


@dataclass(frozen=True)
class Architecture:
    """What the estimates need to know about a model, read from its config."""

    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int  # 1 for dense models
    experts_active: int
    linears: tuple[Linear, ...]  # per layer
    per_layer_other: int  # norms and biases per layer
    final_other: int  # final norm
    positions: int  # learned position embeddings (GPT-2); 0 with RoPE

    # ---- counts
    @property
    def embedding(self) -> int:
        """Input embeddings + learned positions (lookups: memory, no matmul FLOPs)."""
        return self.vocab * self.hidden + self.positions * self.hidden

    @property
    def lm_head(self) -> int:
        """Separate output head parameters (0 when tied to the input embedding)."""
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def linear_params(self) -> int:
        """Parameters of all transformer-block weight matrices (what 4-bit quantization applies to)."""
        return self.layers * sum(lin.fan_in * lin.fan_out * lin.count for lin in self.linears)

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.lm_head
            + self.linear_params
            + self.layers * (self.per_layer_other + self._router)
            + self.final_other
        )

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    @property
    def active_matmul(self) -> int:
        """Parameters touched by matmuls for one token (MoE: only the active experts), output head included."""
        per_layer = sum(
            lin.fan_in * lin.fan_out * (self.experts_active if lin.count > 1 else 1) for lin in self.linears
        )
        return self.layers * (per_layer + self._router) + self.vocab * self.hidden

    @property
    def _router(self) -> int:
        return self.hidden * self.experts if self.experts > 1 else 0

    def lora_params(self, r: int, targets: list[str] | str = "all-linear", dora: bool = False) -> int:
        """Trainable adapter parameters: r * (fan_in + fan_out) per adapted matrix (+ a magnitude vector of
        fan_out for DoRA). ``all-linear`` adapts every block matrix, not the output head (as peft does)."""
        n = 0
        for lin in self.linears:
            if targets != "all-linear" and lin.name not in targets:
                continue
            n += lin.count * (r * (lin.fan_in + lin.fan_out) + (lin.fan_out if dora else 0))
        return n * self.layers


def load_architecture(name_or_path: str) -> Architecture:
    """Architecture for a built-in class (``7b``, ``llama-3.1-8b``), a ``config.json`` file, a model
    folder, or a tunesmith model alias (``tiny``, ``smollm2-135m-instruct``)."""
    key = name_or_path.strip().lower()
    key = CLASS_ALIASES.get(key, key)
    if key in BUILTIN:
        cfg = {k: v for k, v in BUILTIN[key].items() if k != "published"}
        return architecture_from_config(cfg, key)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return architecture_from_config(_read_config(path), path.parent.name or str(path))
    if path.is_dir() or name_or_path in _aliases():
        from tunesmith.models.load import resolve_model_dir

        folder = resolve_model_dir(name_or_path)
        return architecture_from_config(_read_config(folder / "config.json"), name_or_path)
    known = ", ".join([*CLASS_ALIASES, *BUILTIN])
    raise TunesmithError(
        f"Unknown model {name_or_path!r}: not a built-in size class, not a config.json file, not a model folder.",
        f"Pass a local config.json (any Hugging Face model's), a model folder, an alias (tiny, "
        f"smollm2-135m-instruct) or one of: {known}.",
    )


def _aliases() -> set[str]:
    from tunesmith.models.load import ALIASES

    return set(ALIASES)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TunesmithError(
            f"{path} is not a readable JSON config: {exc}", "Pass a Hugging Face config.json."
        ) from exc
    if not isinstance(cfg, dict):
        raise TunesmithError(f"{path} must hold a JSON object.", "Pass a Hugging Face config.json.")
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrappers: the language model part
        cfg = {
            **cfg["text_config"],
            "model_type": cfg["text_config"].get("model_type", cfg.get("model_type")),
        }
    return cfg


def _get(cfg: dict[str, Any], keys: tuple[str, ...], source: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is not None:
        return default
    raise TunesmithError(
        f"{source}: config has none of the fields {', '.join(keys)}.",
        "Pass the config.json of a decoder-only transformer (Llama, Mistral, Qwen, GPT-2 style).",
    )


def architecture_from_config(cfg: dict[str, Any], name: str) -> Architecture:
    """Build the architecture from a config dict (the fields every Hugging Face decoder config carries)."""
    mt = str(cfg.get("model_type", "llama"))
    h = int(_get(cfg, ("hidden_size", "n_embd", "d_model"), name))
    layers = int(_get(cfg, ("num_hidden_layers", "n_layer", "num_layers"), name))
    heads = int(_get(cfg, ("num_attention_heads", "n_head"), name))
    kv = int(cfg.get("num_key_value_heads") or (1 if cfg.get("multi_query") else heads))
    hd = int(cfg.get("head_dim") or h // heads)
    inter = int(_get(cfg, ("intermediate_size", "n_inner", "ffn_dim"), name, default=4 * h))
    vocab = int(_get(cfg, ("vocab_size",), name))
    tied = bool(cfg.get("tie_word_embeddings", mt in _GPT2_LIKE))
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
    active = int(cfg.get("num_experts_per_tok") or 1) if experts > 1 else 1
    if experts > 1 and cfg.get("moe_intermediate_size"):
        inter = int(cfg["moe_intermediate_size"])
    gpt2 = mt in _GPT2_LIKE
    gated = mt not in _NON_GATED
    q, kvd = heads * hd, kv * hd
    if gpt2:  # fused qkv (c_attn), c_proj, c_fc, mlp c_proj; biases everywhere, LayerNorm weight+bias
        linears = (
            Linear("c_attn", h, q + 2 * kvd),
            Linear("attn.c_proj", q, h),
            Linear("c_fc", h, inter),
            Linear("mlp.c_proj", inter, h),
        )
        other = (q + 2 * kvd) + h + inter + h + 4 * h
        final, positions = 2 * h, int(cfg.get("n_positions") or cfg.get("max_position_embeddings") or 0)
    else:
        mlp = (
            [Linear("gate_proj", h, inter, experts), Linear("up_proj", h, inter, experts)]
            if gated
            else [Linear("up_proj", h, inter, experts)]
        )
        mlp.append(Linear("down_proj", inter, h, experts))
        linears = (
            Linear("q_proj", h, q),
            Linear("k_proj", h, kvd),
            Linear("v_proj", h, kvd),
            Linear("o_proj", q, h),
            *mlp,
        )
        other = 2 * h  # input and post-attention RMSNorm
        if cfg.get("attention_bias") or mt == "qwen2":
            other += q + 2 * kvd + (h if cfg.get("attention_bias") else 0)
        if cfg.get("mlp_bias"):
            other += experts * (len(mlp) - 1) * inter + experts * h
        if mt in ("qwen3", "qwen3_moe", "olmo2", "gemma3"):  # per-head q/k norms
            other += 2 * hd
        if mt in ("gemma2", "gemma3"):  # pre- and post-feedforward norms
            other += 2 * h
        final, positions = h, 0
    return Architecture(
        name=name,
        model_type=mt,
        hidden=h,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        head_dim=hd,
        intermediate=inter,
        vocab=vocab,
        tied=tied,
        experts=experts,
        experts_active=active,
        linears=linears,
        per_layer_other=other,
        final_other=final,
        positions=positions,
    )
