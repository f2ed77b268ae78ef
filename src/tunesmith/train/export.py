"""``tunesmith export RUN --merged OUT``: one standalone model folder that plain transformers loads.

An adapter run is merged into its base with peft's ``merge_and_unload`` (LoRA and DoRA alike), in fp32;
a QLoRA adapter is merged into the full-precision base (merging into 4-bit weights would round the update
away), so the merged model matches base + adapter in fp32, which is also what serving uses. A full
fine-tune run is copied as it is. The output is written into a temp folder and renamed into place, and
an existing non-empty ``OUT`` is refused, so nothing saved is overwritten.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.models.inference import locate_run_weights, run_base_model
from tunesmith.train.checkpoints import atomic_dir


def export_merged(run: Path, out: Path, base_model: str | None = None) -> Path:
    """Write the merged model (safetensors + tokenizer + chat template) of ``run`` to ``out``."""
    from tunesmith.models.load import load_causal_lm, load_tokenizer

    run, out = Path(run), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunesmithError(
            f"{out} already exists and is not empty; it is left untouched.", "Pick a new output folder."
        )
    from tunesmith.progress import step

    kind, folder = locate_run_weights(run)
    if kind == "model":
        with step(f"loading the fine-tuned model of {run.name}"):
            model, tokenizer = load_causal_lm(str(folder), dtype="float32"), load_tokenizer(str(folder))
    else:
        base = base_model or run_base_model(run)
        if base is None:
            raise TunesmithError(f"Cannot tell which base model {run} was trained on.", "Pass --model NAME.")
        from peft import PeftModel

        with step(f"merging the adapter of {run.name} into {Path(base).name}"):
            peft_model = PeftModel.from_pretrained(load_causal_lm(base, dtype="float32"), str(folder))
            model = peft_model.merge_and_unload()
        tok_src = folder if (folder / "tokenizer_config.json").exists() else base
        tokenizer = load_tokenizer(str(tok_src))
    if out.exists():
        out.rmdir()  # empty: replaced atomically below
    with atomic_dir(out) as tmp, step(f"saving the merged model to {out}"):
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return out
