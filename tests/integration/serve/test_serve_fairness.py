"""The serving engine under a long prompt and abandoned requests, on the real tiny model (no scripting):
long prompts are prefilled in chunks with short requests served in between, the chunked answer equals the
unchunked one, a cancelled request stops without stopping its batch mates, a request past its budget stops
decoding. Case: long-prompt-blocks-engine."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from tunesmith.data.tokenize import prompt_ids
from tunesmith.models.generate import GenerationSettings
from tunesmith.models.load import load_tokenizer
from tunesmith.serve.engine import Cancelled, Engine, ModelRef

pytestmark = pytest.mark.integration

TINY = ModelRef(base="tiny")
GREEDY = GenerationSettings(max_tokens=8, temperature=0.0)


def _prompt(text: str) -> tuple[list[dict], list[int]]:
    msgs = [{"role": "user", "content": text}]
    return msgs, prompt_ids(load_tokenizer("tiny"), msgs)


class _Probe(Engine):
    """Submits a short request from inside the engine thread while a long prompt is being prefilled (the
    moment a client would arrive), and records the order in which requests finish."""

    def __init__(self, **kw) -> None:  # noqa: ANN003
        self.in_long = False
        self.arrive: tuple | None = None
        self.arrived: Future | None = None
        self.done: list[str] = []
        super().__init__(**kw)

    def _run_long(self, req) -> None:  # noqa: ANN001
        self.in_long = True
        try:
            super()._run_long(req)
        finally:
            self.in_long = False

    def _serve_short(self) -> bool:
        if self.in_long and self.arrive is not None:
            msgs, ids = self.arrive
            self.arrive = None
            self.arrived = self.submit(TINY, msgs, GREEDY, prompt=ids)
            self.arrived.add_done_callback(lambda _: self.done.append("short"))
        return super()._serve_short()


def test_short_requests_get_through_while_a_long_prompt_is_prefilled() -> None:
    long_msgs, long_ids = _prompt("numbers " + " ".join(str(i) for i in range(400)))
    assert len(long_ids) > 4 * 128
    engine = _Probe(batch_window_s=0.0, long_prompt_tokens=128)
    reference = Engine(batch_window_s=0.0, long_prompt_tokens=100_000)  # the same prompt in one prefill
    try:
        engine.arrive = _prompt("hi")
        long_fut = engine.submit(TINY, long_msgs, GREEDY, prompt=long_ids)
        long_fut.add_done_callback(lambda _: engine.done.append("long"))
        chunked = long_fut.result(timeout=300)
        assert engine.arrived is not None and engine.arrived.result(timeout=60).prompt_tokens > 0
        assert engine.done == ["short", "long"]  # arrived during the prefill, answered before it ended
        whole = reference.submit(TINY, long_msgs, GREEDY, prompt=long_ids).result(timeout=300)
        assert chunked.text == whole.text and chunked.completion_tokens == whole.completion_tokens
        assert chunked.prompt_tokens == whole.prompt_tokens == len(long_ids)
    finally:
        engine.close()
        reference.close()


def test_short_requests_go_before_a_waiting_long_one() -> None:
    long_msgs, long_ids = _prompt("words " * 300)
    engine = Engine(batch_window_s=0.5, long_prompt_tokens=64)  # both arrive inside one batch window
    order: list[str] = []
    try:
        lf = engine.submit(TINY, long_msgs, GREEDY, prompt=long_ids)
        lf.add_done_callback(lambda _: order.append("long"))
        msgs, ids = _prompt("hello")
        sf = engine.submit(TINY, msgs, GREEDY, prompt=ids)
        sf.add_done_callback(lambda _: order.append("short"))
        lf.result(timeout=300), sf.result(timeout=300)
        assert order == ["short", "long"]
    finally:
        engine.close()


class _CancelOnStart(Engine):
    """Sets a request's cancel event once its batch has started (as a disconnect during decode would)."""

    victim: threading.Event | None = None

    def _run_batch(self, batch, cache=None) -> None:  # noqa: ANN001
        if self.victim is not None:
            self.victim.set()
        super()._run_batch(batch, cache)


def test_a_cancelled_request_stops_and_its_batch_mate_finishes() -> None:
    engine = _CancelOnStart(batch_window_s=0.5)
    settings = GenerationSettings(max_tokens=24, temperature=0.0)
    try:
        cancel = threading.Event()
        engine.victim = cancel
        msgs, ids = _prompt("one")
        gone = engine.submit(TINY, msgs, settings, prompt=ids, cancel=cancel)
        msgs2, ids2 = _prompt("two")
        mate = engine.submit(TINY, msgs2, settings, prompt=ids2)
        with pytest.raises(Cancelled):
            gone.result(timeout=120)
        kept = mate.result(timeout=120)
        alone = Engine(batch_window_s=0.0)
        try:
            assert kept.text == alone.submit(TINY, msgs2, settings, prompt=ids2).result(timeout=120).text
        finally:
            alone.close()
        assert engine.batches == [2]
    finally:
        engine.close()


def test_a_request_cancelled_while_queued_never_runs() -> None:
    engine = Engine(batch_window_s=0.0)
    try:
        cancel = threading.Event()
        cancel.set()
        msgs, ids = _prompt("late")
        with pytest.raises(Cancelled):
            engine.submit(TINY, msgs, GREEDY, prompt=ids, cancel=cancel).result(timeout=60)
        assert engine.batches == []
    finally:
        engine.close()


def test_a_request_past_its_budget_stops_decoding_with_length() -> None:
    engine = Engine(batch_window_s=0.0)
    try:
        msgs, ids = _prompt("count")
        gen = engine.submit(
            TINY, msgs, GenerationSettings(max_tokens=200, temperature=0.0), prompt=ids, budget_s=0.0
        ).result(timeout=120)
        assert gen.finish_reason == "length" and gen.completion_tokens == 1
    finally:
        engine.close()
