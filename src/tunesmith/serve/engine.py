"""The serving engine: base models loaded once, many LoRA adapters on top, requests batched, LRU memory budget.

Design choices:
- **One generation thread.** Every request is queued; a single thread owns the models, so switching the
  active adapter of a shared base (PEFT ``set_adapter``) can never race another request. Torch already
  uses every core inside one forward pass, so a second generation thread would only thrash the CPU.
- **Batching.** The thread takes the first waiting request, waits ``batch_window_s`` for company, and
  runs every waiting request with the same model *and* the same decoding settings as one batch through
  ``tunesmith.models.generate.generate`` (the shared generation path, so the server's answers equal
  ``tunesmith eval``'s and ``tunesmith chat``'s). Requests with other settings wait for the next batch.
- **Adapters over one base.** A fine-tuned LoRA run is loaded as a named adapter into the one
  ``PeftModel`` wrapping its base; base-model requests run inside ``disable_adapter()``. A full
  fine-tune is its own model.
- **LRU budget.** Loaded bases and adapters are accounted by parameter bytes; past ``budget_bytes`` the
  least recently used adapter (or base, with its adapters) is unloaded before the next one loads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("tunesmith.serve")


@dataclass(frozen=True)
class ModelRef:
    """What to run: a base model name, plus optionally a run/checkpoint folder (adapter or full model)."""

    base: str
    weights: Path | None = None
    kind: str = "base"  # "base" | "adapter" | "model"

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.base}:{self.weights or ''}"


@dataclass
class _Request:
    ref: ModelRef
    messages: list[dict[str, Any]]
    settings: Any  # GenerationSettings
    future: Future = field(default_factory=Future)
    on_text: Any = None  # called from the engine thread with each new piece of answer text (streaming)


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    nbytes: int
    adapters: OrderedDict[str, int] = field(default_factory=OrderedDict)  # adapter name -> bytes


class Engine:
    """Thread-safe front door: ``submit`` returns a Future of a ``Generation``."""

    def __init__(
        self, *, max_batch: int = 8, batch_window_s: float = 0.01, budget_bytes: int = 8 << 30
    ) -> None:
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.budget_bytes = budget_bytes
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._pending: list[_Request] = []
        self._bases: OrderedDict[str, _Loaded] = OrderedDict()  # LRU order, most recent last
        self._adapter_tok: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-engine", daemon=True)
        self._thread.start()
        self.batches: list[int] = []  # sizes of the batches run (observability + tests)
        self.loads = 0

    def submit(
        self, ref: ModelRef, messages: list[dict[str, Any]], settings: Any, on_text: Any = None
    ) -> Future:
        """Queue one conversation; ``on_text`` (optional) receives the answer text as it is decoded."""
        req = _Request(ref, messages, settings, on_text=on_text)
        self._queue.put(req)
        return req.future

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)  # type: ignore[arg-type]
        self._thread.join(timeout=5)

    def loaded(self) -> list[str]:
        out = []
        for key, lo in self._bases.items():
            out.append(key)
            out += [f"{key}+{a}" for a in lo.adapters]
        return out

    # ------------------------------------------------------------------ the generation thread

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._pending:
                req = self._queue.get()
                if req is None:
                    return
                self._pending.append(req)
                deadline = time.monotonic() + self.batch_window_s
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        nxt = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    if nxt is None:
                        return
                    self._pending.append(nxt)
            self._drain_queue()
            head = self._pending[0]
            batch = [r for r in self._pending if r.ref == head.ref and r.settings == head.settings][
                : self.max_batch
            ]
            self._pending = [r for r in self._pending if not any(r is b for b in batch)]
            self._run_batch(batch)

    def _drain_queue(self) -> None:
        while True:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return
            if nxt is None:
                self._stop.set()
                return
            self._pending.append(nxt)

    def _run_batch(self, batch: list[_Request]) -> None:
        from tunesmith.models.generate import generate

        try:
            model, tok, ctx = self._activate(batch[0].ref)
            if any(r.on_text for r in batch):
                from tunesmith.serve.streaming import observed

                model = observed(model, tok, batch)
            with ctx:
                gens = generate(
                    model, tok, [r.messages for r in batch], batch[0].settings, batch_size=len(batch)
                )
            self.batches.append(len(batch))
            for r, g in zip(batch, gens, strict=True):
                r.future.set_result(g)
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting request
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)

    # ------------------------------------------------------------------ models + LRU

    def _activate(self, ref: ModelRef) -> tuple[Any, Any, Any]:
        import contextlib

        if ref.kind == "model":
            lo = self._base(ref.key, lambda: _load_full(ref.weights))
            return lo.model, lo.tokenizer, contextlib.nullcontext()
        lo = self._base(f"base:{ref.base}", lambda: _load_base(ref.base))
        if ref.kind == "base":
            if hasattr(lo.model, "disable_adapter") and lo.adapters:
                return lo.model, lo.tokenizer, lo.model.disable_adapter()
            return lo.model, lo.tokenizer, contextlib.nullcontext()
        name = _adapter_name(ref.weights)
        if name not in lo.adapters:
            self._evict(reserve=_dir_bytes(ref.weights))
            lo = (
                self._bases[f"base:{ref.base}"]
                if f"base:{ref.base}" in self._bases
                else self._base(f"base:{ref.base}", lambda: _load_base(ref.base))
            )
            lo.model = _add_adapter(lo.model, ref.weights, name, first=not lo.adapters)
            lo.adapters[name] = _dir_bytes(ref.weights)
            self._adapter_tok[name] = _adapter_tokenizer(ref.weights) or lo.tokenizer
            self.loads += 1
        lo.adapters.move_to_end(name)
        lo.model.set_adapter(name)
        return lo.model, self._adapter_tok[name], contextlib.nullcontext()

    def _base(self, key: str, load: Any) -> _Loaded:
        if key not in self._bases:
            model, tok = load()
            nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
            self._evict(reserve=nbytes)
            self._bases[key] = _Loaded(model, tok, nbytes)
            self.loads += 1
        self._bases.move_to_end(key)
        return self._bases[key]

    def _used(self) -> int:
        return sum(lo.nbytes + sum(lo.adapters.values()) for lo in self._bases.values())

    def _evict(self, reserve: int) -> None:
        """Unload least recently used adapters, then bases, until ``reserve`` more bytes fit the budget."""
        while self._used() + reserve > self.budget_bytes and self._bases:
            key, lo = next(iter(self._bases.items()))
            if lo.adapters:
                name, _ = lo.adapters.popitem(last=False)
                lo.model.delete_adapter(name)
                self._adapter_tok.pop(name, None)
                log.info("unloaded adapter %s (LRU budget)", name)
                if not lo.adapters:
                    lo.model = lo.model.unload() if hasattr(lo.model, "unload") else lo.model
                continue
            del self._bases[key]
            log.info("unloaded model %s (LRU budget)", key)


def _load_base(name: str) -> tuple[Any, Any]:
    from tunesmith.models.inference import load_for_inference

    return load_for_inference(name, None, dtype="float32")


def _load_full(folder: Path | None) -> tuple[Any, Any]:
    from tunesmith.models.inference import load_for_inference

    return load_for_inference(None, folder, dtype="float32")


def _add_adapter(model: Any, folder: Path | None, name: str, first: bool) -> Any:
    from peft import PeftModel

    from tunesmith.models.inference import locate_run_weights

    _, path = locate_run_weights(Path(folder))  # type: ignore[arg-type]
    if first and not isinstance(model, PeftModel):
        model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
    else:
        model.load_adapter(str(path), adapter_name=name)
    model.eval()
    return model


def _adapter_tokenizer(folder: Path | None) -> Any:
    from tunesmith.models.inference import locate_run_weights
    from tunesmith.models.load import load_tokenizer

    _, path = locate_run_weights(Path(folder))  # type: ignore[arg-type]
    return load_tokenizer(str(path)) if (path / "tokenizer_config.json").exists() else None


def _adapter_name(folder: Path | None) -> str:
    import hashlib

    return "a" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]


def _dir_bytes(folder: Path | None) -> int:
    if folder is None:
        return 0
    return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))
