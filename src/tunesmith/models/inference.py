"""Load a base model with an optional fine-tuned run on top, for eval, chat, RAG answers and serving.

A run folder (``runs/<id>/``) holds ``adapter/`` (PEFT format, for lora/qlora/dora) or ``model/`` (full
fine-tuning), each with the tokenizer and chat template saved beside the weights, and ``summary.json``
whose ``base_model`` names the base. ``adapter`` may also point straight at an adapter or model folder.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models.load import load_causal_lm, load_tokenizer
from tunesmith.results.run import read_run_summary


def run_folder_hint(run: Path) -> str:
    """The hint for a path that should be a run folder but is not one: the folder beside it that the path
    most likely meant (a typo, or a unique prefix of a run id), else where to find run ids."""
    run = Path(run)
    parent = run.parent
    names = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    prefixed = [n for n in names if run.name and n.startswith(run.name)]
    close = prefixed if len(prefixed) == 1 else difflib.get_close_matches(run.name, names, n=1, cutoff=0.8)
    where = "see `tunesmith runs list`"
    return f"Did you mean {parent / close[0]}? ({where})" if close else f"Pass runs/<id> ({where})."


def locate_run_weights(run: Path) -> tuple[str, Path]:
    """``("adapter"|"model", folder)`` for a run folder or a weights folder.

    Raises:
        TunesmithError: ``run`` does not exist (the hint names the closest run folder beside it), or holds
            no saved weights.
    """
    run = Path(run)
    if not run.exists():
        raise TunesmithError(f"{run} does not exist.", run_folder_hint(run))
    if (run / "adapter_config.json").exists():
        return "adapter", run
    if (run / "adapter" / "adapter_config.json").exists():
        return "adapter", run / "adapter"
    if (run / "model" / "config.json").exists():
        return "model", run / "model"
    if (run / "config.json").exists():
        return "model", run
    raise TunesmithError(
        f"{run} holds no adapter/ or model/ folder: not a finished tunesmith run.",
        "Pass runs/<id> of a completed training run (see `tunesmith runs list`).",
    )


def run_base_model(run: Path) -> str | None:
    """The base model a run was trained from (from summary.json or adapter_config.json)."""
    run = Path(run)
    for f in (run / "summary.json", run.parent / "summary.json"):
        if f.exists():
            base = read_run_summary(f).base_model
            if base:
                return base
    kind, folder = locate_run_weights(run)
    if kind == "adapter":
        return json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    return None


def load_for_inference(
    model: str | None, adapter: Path | None = None, *, dtype: str = "auto", device: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode: the base alone, base + PEFT adapter, or a fully fine-tuned model."""
    if adapter is None:
        if model is None:
            raise TunesmithError("No model given.", "Pass --model NAME or --adapter RUN.")
        return load_causal_lm(model, dtype=dtype, device=device), load_tokenizer(model)
    kind, folder = locate_run_weights(adapter)
    if kind == "model":
        return load_causal_lm(str(folder), dtype=dtype, device=device), load_tokenizer(str(folder))
    base = model or run_base_model(adapter)
    if base is None:
        raise TunesmithError(f"Cannot tell which base model {adapter} was trained on.", "Pass --model NAME.")
    from peft import PeftModel

    base_model = load_causal_lm(base, dtype=dtype, device=device)
    peft_model = PeftModel.from_pretrained(base_model, str(folder))
    peft_model.eval()
    tok_src = folder if (folder / "tokenizer_config.json").exists() else base
    return peft_model, load_tokenizer(str(tok_src))
