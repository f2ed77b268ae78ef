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
- **Fairness: a separate lane for long prompts.** The chat route refuses prompts over the model's context
  and hands over the prompt's token ids. Prompts longer than ``long_prompt_tokens`` run one at a time and
  are prefilled in chunks of that size into a KV cache; between two chunks every waiting short request
  is served. Short requests go first whenever both kinds wait. A long request's decode (at most its
  ``max_tokens``) is not interleaved.
- **Cancellation and budgets.** Each request carries a ``cancel`` event (set by the route when the client
  disconnects) and a wall-clock ``deadline``. A cancelled request waiting in the queue is dropped; during
  prefill it stops at the next chunk; during decode a per-row stopping criterion ends its row (the batch
  stops when every row has), so an abandoned request costs at most one more decode step. Past its
  deadline a request stops decoding with ``finish_reason`` "length".
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


class Cancelled(Exception):
    """The request was cancelled (its client went away) before its answer was complete."""


@dataclass
class _Request:
    ref: ModelRef
    messages: list[dict[str, Any]]
    settings: Any  # GenerationSettings
    future: Future = field(default_factory=Future)
    on_text: Any = None  # called from the engine thread with each new piece of answer text (streaming)
    prompt: list[int] | None = None  # templated prompt token ids (the route tokenized and checked it)
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")  # time.monotonic() after which decoding stops

    def stopped(self) -> bool:
        return self.cancel.is_set() or time.monotonic() > self.deadline


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    nbytes: int
    adapters: OrderedDict[str, int] = field(default_factory=OrderedDict)  # adapter name -> bytes


class Engine:
    """Thread-safe front door: ``submit`` returns a Future of a ``Generation``."""

    def __init__(
        self,
        *,
        max_batch: int = 8,
        batch_window_s: float = 0.01,
        budget_bytes: int = 8 << 30,
        long_prompt_tokens: int = 512,
    ) -> None:
        self.max_batch = max_batch
        self.long_prompt_tokens = long_prompt_tokens
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
        # test hook: prompt ids -> the answer text the model "generates" (serve.testing.scripted); None in use
        self.script: Any = None

    def submit(
        self,
        ref: ModelRef,
        messages: list[dict[str, Any]],
        settings: Any,
        on_text: Any = None,
        *,
        prompt: list[int] | None = None,
        cancel: threading.Event | None = None,
        budget_s: float | None = None,
    ) -> Future:
        """Queue one conversation; ``on_text`` (optional) receives the answer text as it is decoded.

        ``prompt``: the conversation's templated token ids (else they are computed here); ``cancel``: set
        it to abandon the request (the future then fails with ``Cancelled``); ``budget_s``: wall-clock
        seconds after which decoding stops (``finish_reason`` "length")."""
        req = _Request(ref, messages, settings, on_text=on_text, prompt=prompt)
        if cancel is not None:
            req.cancel = cancel
        if budget_s is not None:
            req.deadline = time.monotonic() + budget_s
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
            self._drop_cancelled()
            if not self._pending:
                continue
            if not self._serve_short():
                head = self._pending.pop(0)  # only long prompts wait: the oldest one
                self._run_long(head)

    def _is_long(self, r: _Request) -> bool:
        return r.prompt is not None and len(r.prompt) > self.long_prompt_tokens

    def _drop_cancelled(self) -> None:
        for r in [r for r in self._pending if r.cancel.is_set()]:
            _settle(r.future, exc=Cancelled("the request was cancelled"))
        self._pending = [r for r in self._pending if not r.cancel.is_set()]

    def _serve_short(self) -> bool:
        """Run every waiting short request (batched by model and settings); False when none waited."""
        ran = False
        while True:
            self._drain_queue()
            self._drop_cancelled()
            short = [r for r in self._pending if not self._is_long(r)]
            if not short:
                return ran
            head = short[0]
            batch = [r for r in short if r.ref == head.ref and r.settings == head.settings][: self.max_batch]
            self._pending = [r for r in self._pending if not any(r is b for b in batch)]
            self._run_batch(batch)
            ran = True

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

    def _run_batch(self, batch: list[_Request], cache: Any = None) -> None:
        from tunesmith.models.generate import generate_from_ids

        try:
            model, tok, ctx = self._activate(batch[0].ref)
            for r in batch:
                if r.prompt is None:
                    r.prompt = _prompt(tok, r.messages)
            if self.script is not None:
                from tunesmith.serve.testing import scripted

                model = scripted(model, tok, self.script)
            # shortest first, as the shared path orders them, so batch row i is batch[i] (stable sort)
            batch.sort(key=lambda r: len(r.prompt or ()))
            if any(r.on_text for r in batch):
                from tunesmith.serve.streaming import observed

                model = observed(model, tok, batch)
            model = _Guarded(model, batch, cache)
            with ctx:
                gens = generate_from_ids(
                    model, tok, [r.prompt for r in batch], batch[0].settings, batch_size=len(batch)
                )
            self.batches.append(len(batch))
            for r, g in zip(batch, gens, strict=True):
                if r.cancel.is_set():
                    _settle(r.future, exc=Cancelled("the request was cancelled"))
                else:
                    _settle(r.future, result=g)
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting request
            for r in batch:
                _settle(r.future, exc=exc)

    def _run_long(self, req: _Request) -> None:
        """Prefill a long prompt chunk by chunk (serving short requests in between), then decode it."""
        import torch
        from transformers import DynamicCache

        try:
            prompt = req.prompt or []
            ids = torch.tensor([prompt], dtype=torch.long)
            model, _, _ = self._activate(req.ref)
            cache = DynamicCache(config=getattr(model, "config", None))
            step = max(1, self.long_prompt_tokens)
            for start in range(0, len(prompt) - 1, step):
                if req.cancel.is_set():
                    raise Cancelled("the request was cancelled during prefill")
                end = min(start + step, len(prompt) - 1)
                model, _, ctx = self._activate(req.ref)  # short batches in between may switch adapters
                device = next(model.parameters()).device
                with ctx, torch.inference_mode():
                    model(
                        input_ids=ids[:, start:end].to(device),
                        past_key_values=cache,
                        use_cache=True,
                        cache_position=torch.arange(start, end, device=device),
                    )
                self._serve_short()
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting request
            _settle(req.future, exc=exc)
            return
        self._run_batch([req], cache=cache)

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


class _Guarded:
    """The model with a per-row stopping criterion (cancelled or past its deadline) added to ``generate``,
    and optionally a prefilled KV cache; everything else is the model itself."""

    def __init__(self, model: Any, batch: list[_Request], cache: Any = None) -> None:
        self._model, self._batch, self._cache = model, batch, cache

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        batch = self._batch

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.tensor([r.stopped() for r in batch], dtype=torch.bool, device=input_ids.device)

        criteria = StoppingCriteriaList([_Stop()])
        if kwargs.get("stopping_criteria"):
            criteria.extend(kwargs.pop("stopping_criteria"))
        if self._cache is not None:
            kwargs["past_key_values"] = self._cache
        return self._model.generate(*args, stopping_criteria=criteria, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _settle(fut: Future, result: Any = None, exc: BaseException | None = None) -> None:
    """Deliver a result once; a future its waiter already cancelled (asyncio.wrap_future) is left alone."""
    import concurrent.futures

    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _prompt(tok: Any, messages: list[dict[str, Any]]) -> list[int]:
    from tunesmith.data.tokenize import prompt_ids

    return prompt_ids(tok, messages)


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
