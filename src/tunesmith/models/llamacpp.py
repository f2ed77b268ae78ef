"""llama.cpp through its own maintained code: the HF -> GGUF converter, the quantizer and the runtime.

- **Runtime and quantizer**: ``llama-cpp-python`` (PyPI, built from its sdist by ``make install``; the
  ``export`` extra). ``llama_cpp.llama_model_quantize`` is llama.cpp's ``llama-quantize``;
  ``llama_cpp.Llama`` runs a GGUF.
- **Converter**: llama.cpp's ``convert_hf_to_gguf.py`` with its ``conversion/`` package and the ``gguf-py``
  it was released with. llama-cpp-python's wheel does not install them, but its sdist ships them
  (``vendor/llama.cpp/``); ``install_converter`` (``python -m tunesmith.models.llamacpp``, run by
  ``make install``) extracts those three paths of the *same* sdist version into the environment
  (``<sys.prefix>/share/tunesmith/llama.cpp-<version>/``). Nothing is copied into this repository, and
  converter and runtime always come from one llama.cpp commit.

The converter runs as a subprocess (it is a script with its own ``gguf`` on ``sys.path``); its log goes to
``$TUNESMITH_HOME/logs/libraries.log`` and its last lines into the error when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

LLAMA_CPP_PYTHON = "0.3.36"  # keep equal to the `export` extra in pyproject.toml
QUANT_FTYPES = {"f16": 1, "q8_0": 7, "q4_k_m": 15}  # llama.h's LLAMA_FTYPE_MOSTLY_*
MANIFEST = "export.json"  # written beside a GGUF by `tunesmith export --format gguf`
_CONVERTER_PATHS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
_INSTALL_HINT = (
    "Run `make install` (or `pip install 'tunesmith[export]' && python -m tunesmith.models.llamacpp`)."
)


def converter_dir() -> Path:
    """Where llama.cpp's converter lives (``$TUNESMITH_LLAMACPP_CONVERTER`` overrides)."""
    env = os.environ.get("TUNESMITH_LLAMACPP_CONVERTER")
    return Path(env) if env else Path(sys.prefix) / "share" / "tunesmith" / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def require_llama_cpp() -> Any:
    """The ``llama_cpp`` module.

    Raises:
        TunesmithError: when llama-cpp-python is not installed.
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise TunesmithError("llama-cpp-python is not installed (GGUF export and llama.cpp eval need it).",
                             _INSTALL_HINT) from exc  # fmt: skip
    return llama_cpp


def install_converter(target: Path | None = None) -> Path:
    """Extract llama.cpp's converter from the llama-cpp-python sdist of ``LLAMA_CPP_PYTHON`` (``pip
    download``: the sdist comes from pip's cache after the first build) into ``target``.

    Raises:
        TunesmithError: when the sdist cannot be downloaded or lacks the converter.
    """
    target = Path(target or converter_dir())
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               "-d", tmp, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            raise TunesmithError(
                f"Could not download the llama-cpp-python {LLAMA_CPP_PYTHON} sdist: {done.stderr[-500:]}",
                "Check access to PyPI and run `python -m tunesmith.models.llamacpp` again.",
            )
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        with tarfile.open(sdists[0]) as tar:
            root = tar.getnames()[0].split("/")[0]
            prefix = f"{root}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if _wanted(m.name, prefix)]
            if not any(m.name.endswith("convert_hf_to_gguf.py") for m in members):
                raise TunesmithError(f"{sdists[0].name} holds no vendor/llama.cpp/convert_hf_to_gguf.py.")
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(staging, members=members, filter="data")
        os.replace(staging, target)
    return target


def _wanted(name: str, prefix: str) -> bool:
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return any(rest == p or rest.startswith(p + "/") for p in _CONVERTER_PATHS)


def convert_hf_to_gguf(model_dir: Path, out_file: Path, outtype: str, log: Path | None = None) -> Path:
    """Run llama.cpp's ``convert_hf_to_gguf.py`` on a transformers folder (``outtype`` f32, f16, bf16 or
    q8_0). The chat template, BOS/EOS/EOT/pad ids and the tokenizer go into the GGUF's metadata.

    Raises:
        TunesmithError: when the converter is missing or fails (its last log lines in the message).
    """
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise TunesmithError(f"llama.cpp's converter is not installed ({script} is missing).", _INSTALL_HINT)
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(out_file), "--outtype", outtype]
    _run(cmd, log, f"llama.cpp's converter failed on {model_dir}", out_file)
    return Path(out_file)


def set_special_tokens(src: Path, dst: Path, tokens: dict[str, str], log: Path | None = None) -> Path:
    """Copy ``src`` to ``dst`` with special tokens set by text (``{"eot": "<|im_end|>"}``), with gguf-py's
    ``gguf_new_metadata.py`` of the converter's release.

    Raises:
        TunesmithError: when the script fails.
    """
    script = converter_dir() / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    if not script.is_file():
        raise TunesmithError(f"llama.cpp's gguf-py is not installed ({script} is missing).", _INSTALL_HINT)
    cmd = [sys.executable, str(script), str(src), str(dst), "--force"]
    for kind, text in tokens.items():
        cmd += ["--special-token", kind, text]
    _run(cmd, log, f"gguf_new_metadata.py failed on {src}", dst)
    return Path(dst)


def _run(cmd: list[str], log: Path | None, failure: str, expect: Path) -> None:
    # the converter and gguf-py must use the gguf-py they were released with (NO_LOCAL_GGUF switches that off)
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0 or not Path(expect).is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        hint = "See the message above."
        if "pre-tokenizer was not recognized" in tail:
            hint = ("llama.cpp does not know this tokenizer's pre-tokenizer, so a GGUF of it would tokenize "
                    "differently; only models whose tokenizer llama.cpp supports can be exported.")  # fmt: skip
        raise TunesmithError(f"{failure}:\n{tail}", hint)


def quantize_gguf(
    src: Path, dst: Path, quant: str, threads: int | None = None, log: Path | None = None
) -> Path:
    """llama.cpp's quantizer (``llama_model_quantize``, what ``llama-quantize`` runs) from an f32/f16 GGUF.
    Tensors whose rows do not divide into the quant's blocks keep llama.cpp's own fallback type. It runs in a
    child process: its per-tensor log goes to ``log``, and a crash inside llama.cpp is an error, not the end
    of the caller.

    Raises:
        TunesmithError: for an unknown quant or a failed quantization.
    """
    if quant not in QUANT_FTYPES:
        raise TunesmithError(f"Unknown quantization {quant!r}.", f"Use one of {', '.join(QUANT_FTYPES)}.")
    require_llama_cpp()
    n = threads or max(1, os.cpu_count() or 1)
    cmd = [sys.executable, "-c", _QUANTIZE, str(src), str(dst), str(QUANT_FTYPES[quant]), str(n)]
    _run(cmd, log, f"llama.cpp could not quantize {src} to {quant}", dst)
    return Path(dst)


_QUANTIZE = """import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = int(sys.argv[3]), int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))
"""


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's key/value metadata (strings, numbers, lists of those), read with the ``gguf`` package;
    the token list and merges are left out (they are large)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                   "tokenizer.ggml.scores"):  # fmt: skip
            out[key] = f"<{len(field.data)} entries>"
            continue
        try:
            out[key] = field.contents()
        except Exception:  # noqa: BLE001 - an exotic field type is shown as its type only
            out[key] = f"<{field.types}>"
    return out


# --------------------------------------------------------------------------- running a GGUF


@dataclass(frozen=True)
class GgufGeneration:
    """One greedy answer from llama.cpp."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (an end-of-generation token) or "length"


def load_gguf(path: Path, n_ctx: int = 2048, threads: int | None = None) -> Any:
    """A ``llama_cpp.Llama`` on ``path`` (CPU, quiet).

    Raises:
        TunesmithError: when llama-cpp-python is missing or the file is not a loadable GGUF.
    """
    llama_cpp = require_llama_cpp()
    if not Path(path).is_file():
        raise TunesmithError(f"{path} does not exist.", "Pass the .gguf file `tunesmith export` wrote.")
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 1,
                               n_batch=min(512, n_ctx), verbose=False, seed=0)  # fmt: skip
    except (ValueError, RuntimeError) as exc:
        raise TunesmithError(f"llama.cpp could not load {path}: {exc}", "Is it a GGUF file?") from exc


def tokenize_text(llm: Any, text: str) -> list[int]:
    """llama.cpp's tokens for already-templated ``text`` (special tokens parsed, no BOS added: the chat
    template writes its own)."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def generate_greedy(llm: Any, prompt: Sequence[int], max_tokens: int) -> GgufGeneration:
    """Greedy decoding (temperature 0, no penalties) until an end-of-generation token or ``max_tokens``."""
    llama_cpp = require_llama_cpp()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out: list[int] = []
    finish = "length"
    for tok in llm.generate(list(prompt), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            finish = "stop"
            break
        out.append(tok)
        if len(out) >= max_tokens:
            break
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    return GgufGeneration(text.strip(), len(prompt), len(out) + (finish == "stop"), finish)


def next_token_logprobs(llm: Any, prompt: Sequence[int]) -> Any:
    """log-softmax of llama.cpp's logits for the token after ``prompt`` (numpy, float64, ``[n_vocab]``)."""
    import numpy as np

    llama_cpp = require_llama_cpp()
    llm.reset()
    llm.eval(list(prompt))
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
    logits -= logits.max()
    return logits - np.log(np.exp(logits).sum())


def read_manifest(path: Path) -> dict[str, Any]:
    """``export.json`` beside a GGUF (``path``: the .gguf file or its folder); empty when there is none."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    f = folder / MANIFEST
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TunesmithError(f"{f} is not valid JSON ({exc}).", "Export again.") from exc


if __name__ == "__main__":  # `python -m tunesmith.models.llamacpp`: what `make install` runs
    print(install_converter())
