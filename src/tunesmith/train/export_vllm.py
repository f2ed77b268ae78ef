"""``tunesmith export RUN --format vllm --out DIR``: the LoRA adapter as vLLM loads it, and the command.

    adapter_config.json (+ the weights' tensor names) -> the checks vLLM makes when it loads an adapter
    -> DIR/adapter/ (adapter_config.json, adapter_model.safetensors, tokenizer + chat template)
    -> DIR/serve.sh (``vllm serve BASE --enable-lora --lora-modules NAME=DIR/adapter --max-lora-rank R``)
    -> DIR/export.json (what was checked)

The checks are those of vLLM's ``vllm/lora/peft_helper.py`` (``PEFTHelper._validate_features`` and
``validate_legal``) and ``vllm/config/lora.py`` (``MaxLoRARanks``), checked before anything is written so
that a server does not refuse the adapter at load time: rank (and every ``rank_pattern`` rank) at most the
largest ``--max-lora-rank`` vLLM accepts; no DoRA; ``modules_to_save`` empty (vLLM loads LoRA matrices only);
``bias: none`` and no ``lora_bias``; an ``init_lora_weights`` that does not change the base weights (PiSSA,
OLoRA, CorDA, LoftQ do); target modules among the decoder's linear layers (what vLLM's models register for
LoRA: attention and MLP projections; embeddings and ``lm_head`` are not). The ``--max-lora-rank`` written is
the smallest value vLLM accepts that holds the adapter's rank.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models.inference import locate_run_weights, run_base_model
from tunesmith.train.checkpoints import atomic_dir

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py: MaxLoRARanks
VLLM_LORA_MODULES = frozenset(
    # the decoder linear layers vLLM's Llama/Qwen/Mistral/Gemma/Phi-style models accept LoRA on
    ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj", "gate_up_proj",
     "dense", "fc1", "fc2", "query_key_value", "dense_h_to_4h", "dense_4h_to_h", "c_attn", "c_proj", "c_fc")
)  # fmt: skip
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")
_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class VllmExport:
    """What ``export_vllm`` wrote."""

    out: Path
    adapter: Path
    name: str
    base_model: str
    rank: int
    max_lora_rank: int
    target_modules: tuple[str, ...]
    command: str


def export_vllm(
    run: Path, out: Path, *, name: str | None = None, base_model: str | None = None
) -> VllmExport:
    """Check ``run``'s adapter against vLLM's rules and write it with its serve command into ``out``.

    Raises:
        TunesmithError: when the run is not a LoRA adapter, an adapter rule vLLM enforces is broken (each
            broken rule named, with the fix), or ``out`` is not empty.
    """
    run, out = Path(run), Path(out)
    kind, folder = locate_run_weights(run)
    if kind != "adapter":
        raise TunesmithError(
            f"{run} is a full fine-tune, not an adapter: vLLM serves it as a model, not with --enable-lora.",
            f"Serve it directly: vllm serve {folder}",
        )
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    problems = check_vllm_adapter(config, _tensor_names(folder))
    if problems:
        raise TunesmithError(
            "vLLM would refuse this adapter:\n- " + "\n- ".join(problems),
            "Train a plain LoRA (finetune: lora, no modules_to_save, target_modules among the attention/MLP "
            "projections) or export the merged model instead (--format merged).",
        )
    base = base_model or run_base_model(run) or config.get("base_model_name_or_path")
    if not base:
        raise TunesmithError(f"Cannot tell which base model {run} was trained on.", "Pass --model NAME.")
    base = _servable_base(base)
    rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
    max_rank = next(r for r in MAX_LORA_RANKS if r >= rank)
    name = name or _default_name(run)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunesmithError(
            f"{out} already exists and is not empty; it is left untouched.", "Pick a new folder."
        )
    adapter_dir = out / "adapter"
    command = serve_command(base, name, adapter_dir.resolve(), max_rank)
    targets = tuple(
        sorted(_targets(config) or {n.split(".lora_")[0].split(".")[-1] for n in _tensor_names(folder)})
    )
    if out.exists():
        out.rmdir()
    with atomic_dir(out) as tmp:
        shutil.copytree(folder, tmp / "adapter")
        (tmp / "serve.sh").write_text(
            f"#!/bin/sh\n# Written by `tunesmith export --format vllm`.\n{command}\n"
        )
        (tmp / "serve.sh").chmod(0o755)
        manifest = {"format": "vllm", "run": str(run.resolve()), "base_model": base, "name": name, "rank": rank,
                    "max_lora_rank": max_rank, "target_modules": list(targets), "command": command,
                    "checked": "vllm/lora/peft_helper.py rules: rank, DoRA, modules_to_save, bias, init, targets"}  # fmt: skip
        (tmp / "export.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return VllmExport(out, adapter_dir, name, base, rank, max_rank, targets, command)


def check_vllm_adapter(config: dict[str, Any], tensor_names: list[str]) -> list[str]:
    """Every rule of vLLM's adapter loader that ``config`` (adapter_config.json) or the weights' tensor
    names break, as readable sentences (empty: vLLM loads it)."""
    problems: list[str] = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')}; vLLM loads LoRA adapters only.")
    ranks = {"r": config.get("r")} | {
        f"rank_pattern[{k}]": v for k, v in (config.get("rank_pattern") or {}).items()
    }
    for where, r in ranks.items():
        if not isinstance(r, int) or r < 1:
            problems.append(f"{where} is {r!r}; vLLM needs a positive integer rank.")
        elif r > MAX_LORA_RANKS[-1]:
            problems.append(f"{where} is {r}; vLLM's largest --max-lora-rank is {MAX_LORA_RANKS[-1]}.")
    if config.get("use_dora"):
        problems.append("use_dora is true: vLLM does not support DoRA (merge it and serve the merged model).")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save is {config['modules_to_save']}: vLLM loads LoRA matrices only.")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("the adapter trains biases (bias/lora_bias): vLLM does not load adapter biases.")
    init = str(config.get("init_lora_weights", True)).lower()
    if any(init.startswith(x) for x in _BASE_CHANGING_INITS):
        problems.append(
            f"init_lora_weights is {init}: it changes the base weights, which vLLM serves unchanged."
        )
    from_weights = {n.split(".lora_")[0].split(".")[-1] for n in tensor_names if ".lora_" in n}
    bad = sorted(t for t in _targets(config) | from_weights if t not in VLLM_LORA_MODULES)
    if bad:
        problems.append(f"target modules {bad} are not linear layers vLLM applies LoRA to.")
    extra = [n for n in tensor_names if "lora_A" not in n and "lora_B" not in n]
    if extra:
        problems.append(f"the weights hold non-LoRA tensors ({', '.join(extra[:3])}); vLLM refuses those.")
    return problems


def serve_command(base: str, name: str, adapter: Path, max_lora_rank: int) -> str:
    """The ``vllm serve`` command line that serves ``adapter`` as model ``name`` on ``base``."""
    return " ".join(["vllm", "serve", shlex.quote(base), "--enable-lora", "--lora-modules",
                     shlex.quote(f"{name}={adapter}"), "--max-lora-rank", str(max_lora_rank)])  # fmt: skip


def _targets(config: dict[str, Any]) -> set[str]:
    t = config.get("target_modules") or []
    if isinstance(t, str):  # a regex or "all-linear": peft resolved it; the names are in the weights
        return set()
    return {str(x).split(".")[-1] for x in t}


def _tensor_names(folder: Path) -> list[str]:
    f = folder / _WEIGHT_FILES[0]
    if f.is_file():
        from safetensors import safe_open

        with safe_open(str(f), framework="pt") as fh:
            return list(fh.keys())
    if (folder / _WEIGHT_FILES[1]).is_file():
        return []  # .bin: names are checked by vLLM at load; tunesmith always writes safetensors
    raise TunesmithError(f"{folder} holds no adapter weights ({' or '.join(_WEIGHT_FILES)}).")


def _servable_base(base: str) -> str:
    """A base vLLM can load: a hub id or folder as it is; tunesmith's embedded alias as its local folder."""
    from tunesmith.models.load import is_embedded, resolve_model_dir

    return str(resolve_model_dir(base)) if is_embedded(base) else base


def _default_name(run: Path) -> str:
    name = run.resolve().name
    return name if name not in ("adapter", "model") else run.resolve().parent.name
