"""``tunesmith export RUN --format gguf [--quant f16|q8_0|q4_k_m] --out DIR``: the model for llama.cpp/Ollama.

    the run's tokenizer -> the Ollama template, proven equal to the model's (before any heavy work)
    -> merged fp32 model (``export_merged``: peft ``merge_and_unload``) in a scratch folder
    -> llama.cpp's converter (f16 directly; f32 for a quantized export) -> llama.cpp's quantizer (q8_0, q4_k_m)
    -> the end-of-turn token set as EOT in the metadata (gguf-py) -> metadata read back and checked
    -> DIR/model-<quant>.gguf, DIR/Modelfile, DIR/export.json

All GGUF writing is llama.cpp's own code (``tunesmith.models.llamacpp``); tunesmith adds the checks: the
GGUF's ``tokenizer.chat_template`` is the model's template, its EOS/EOT ids are the tokenizer's, and the
Modelfile's template renders like the model's own. ``export.json`` records the run, base model, system
prompt and quantization, so ``--verify`` and ``eval --engine llamacpp`` compare against the same run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models import llamacpp
from tunesmith.models.inference import locate_run_weights, run_base_model
from tunesmith.paths import tunesmith_home
from tunesmith.progress import step
from tunesmith.train.checkpoints import atomic_dir
from tunesmith.train.export import export_merged
from tunesmith.train.ollama import build_modelfile, write_modelfile

QUANTS = ("f16", "q8_0", "q4_k_m")


@dataclass(frozen=True)
class GgufExport:
    """What ``export_gguf`` wrote and what it read back from the GGUF."""

    out: Path
    gguf: Path
    quant: str
    modelfile: Path | None
    metadata: dict[str, Any]  # the checked metadata keys (chat template, bos/eos/eot ids, architecture)
    size_bytes: int


def export_gguf(
    run: Path,
    out: Path,
    *,
    quant: str = "f16",
    base_model: str | None = None,
    system_prompt: str | None = None,
    modelfile: bool = True,
) -> GgufExport:
    """Export ``run`` (adapter or full model) as one GGUF of ``quant`` with an Ollama Modelfile into ``out``.

    Raises:
        TunesmithError: for an unknown quant, a non-empty ``out``, a chat template Ollama cannot express
            (unless ``modelfile`` is False), a missing llama.cpp install, or a converter/quantizer failure.
    """
    run, out = Path(run), Path(out)
    if quant not in QUANTS:
        raise TunesmithError(f"--quant {quant} is not offered.", f"Use one of {', '.join(QUANTS)}.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunesmithError(
            f"{out} already exists and is not empty; it is left untouched.", "Pick a new folder."
        )
    llamacpp.require_llama_cpp()
    tokenizer = _run_tokenizer(run, base_model)
    name = f"model-{quant}.gguf"
    mf = build_modelfile(tokenizer, name, system_prompt) if modelfile else None  # refuses before heavy work
    log = tunesmith_home() / "logs" / "libraries.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as scratch:
        work = Path(scratch)
        merged = export_merged(run, work / "merged", base_model)
        if quant == "f16":
            with step("converting to GGUF (f16, llama.cpp)"):
                raw = llamacpp.convert_hf_to_gguf(merged, work / "raw.gguf", "f16", log)
        else:
            with step("converting to GGUF (f32, llama.cpp)"):
                f32 = llamacpp.convert_hf_to_gguf(merged, work / "f32.gguf", "f32", log)
            with step(f"quantizing to {quant} (llama.cpp)"):
                raw = llamacpp.quantize_gguf(f32, work / "raw.gguf", quant, log=log)
            f32.unlink()
        shutil.rmtree(merged)
        eot = end_of_turn_token(tokenizer, mf.stop if mf else ())
        final = llamacpp.set_special_tokens(raw, work / name, {"eot": eot}, log) if eot else raw
        metadata = check_metadata(final, tokenizer, eot)
        if out.exists():
            out.rmdir()
        with atomic_dir(out) as tmp:
            shutil.move(str(final), tmp / name)
            mf_path = write_modelfile(tmp, mf) if mf else None
            manifest = {
                "format": "gguf",
                "quant": quant,
                "gguf": name,
                "run": str(run.resolve()),
                "base_model": base_model or run_base_model(run),
                "system_prompt": system_prompt,
                "llama_cpp_python": llamacpp.LLAMA_CPP_PYTHON,
                "metadata": metadata,
                "modelfile": "Modelfile" if mf else None,
            }
            (tmp / llamacpp.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    gguf = out / name
    return GgufExport(
        out, gguf, quant, out / mf_path.name if mf_path else None, metadata, gguf.stat().st_size
    )


def end_of_turn_token(tokenizer: Any, stops: tuple[str, ...] | list[str]) -> str | None:
    """The token the chat template closes an answer with (the first special stop that is not EOS, else
    EOS): what llama.cpp should treat as end-of-turn."""
    special = [s for s in stops if s in tokenizer.get_vocab()]
    others = [s for s in special if s != tokenizer.eos_token]
    if others:
        return others[0]
    return special[0] if special else tokenizer.eos_token


def check_metadata(gguf: Path, tokenizer: Any, eot: str | None) -> dict[str, Any]:
    """Read the GGUF's metadata back and check that the chat template and the BOS/EOS/EOT ids are the
    tokenizer's. Returns the checked keys.

    Raises:
        TunesmithError: naming the key that differs.
    """
    meta = llamacpp.gguf_metadata(gguf)
    vocab = tokenizer.get_vocab()
    want: dict[str, Any] = {
        "tokenizer.chat_template": tokenizer.chat_template,
        "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
    }
    if tokenizer.bos_token_id is not None:
        want["tokenizer.ggml.bos_token_id"] = tokenizer.bos_token_id
    if eot is not None:
        want["tokenizer.ggml.eot_token_id"] = vocab[eot]
    for key, value in want.items():
        if meta.get(key) != value:
            raise TunesmithError(
                f"The GGUF's {key} is {_short(meta.get(key))}, but the model's is {_short(value)}.",
                "This is a converter problem; please report it with the model.",
            )
    keep = ("general.architecture", "general.file_type", "tokenizer.ggml.model", "tokenizer.ggml.pre",
            "tokenizer.ggml.add_bos_token", "tokenizer.ggml.padding_token_id")  # fmt: skip
    return {**{k: meta[k] for k in keep if k in meta}, **want}


def _run_tokenizer(run: Path, base_model: str | None) -> Any:
    from tunesmith.models.load import load_tokenizer

    kind, folder = locate_run_weights(run)
    if kind == "model" or (folder / "tokenizer_config.json").exists():
        return load_tokenizer(str(folder))
    base = base_model or run_base_model(run)
    if base is None:
        raise TunesmithError(f"Cannot tell which base model {run} was trained on.", "Pass --model NAME.")
    return load_tokenizer(base)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 80 else s[:77] + "..."
