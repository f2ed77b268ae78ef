"""Model judges: ``score_model`` and ``label_model`` (OpenAI's shapes) and tunesmith's ``pairwise``.

A judge's messages (the rubric, with ``{{item.*}}`` / ``{{sample.*}}`` templates) go to a chat model with one
closing instruction added (reply with a number in the range / one of the labels / A, B or tie); the reply is
read as JSON (``{"result": ...}``, what OpenAI's judges return) or, failing that, as the first number / the one
label it names. A reply that holds neither is graded as the range's low end (score), a non-passing grade
(label) or a tie (pairwise), with the reply kept in ``Grade.note`` and counted by the caller.

Where the judge runs (``judge_client``), first match wins:
1. an endpoint: the grader's ``base_url``, else ``endpoint`` passed in (``--judge-url``), else the
   environment's ``TUNESMITH_JUDGE_URL`` or ``OPENAI_BASE_URL``: any OpenAI-compatible server (``tunesmith
   serve``, vLLM, Ollama, a hosted API), called with the real ``openai`` SDK (key: ``OPENAI_API_KEY``);
2. a local model: ``model`` is a tunesmith alias or a model folder; it runs in-process, greedy. The default
   ``model`` is the embedded SmolLM2-135M-Instruct, which works offline but is a **weak judge** (a 135M
   model; the report says so and its numbers need calibration before a gate can use them);
3. ``OPENAI_API_KEY`` set and ``model`` not local: OpenAI's hosted API.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.base import Grade, Grader
from tunesmith.graders.template import make_sample, render

WEAK_NOTE = (
    "weak judge: the embedded SmolLM2-135M (135M parameters) runs offline but often misjudges; calibrate it "
    "(tunesmith grade calibrate) or point the grader at a stronger model"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
CONCURRENT_REQUESTS = 8  # judge requests in flight at once per grader


class JudgeClient:
    """Sends conversations to the judge model and returns the replies, in order."""

    label: str = ""
    weak: bool = False

    def complete(self, conversations: list[list[dict[str, str]]], params: Any) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or connection."""


class EndpointJudge(JudgeClient):
    """A judge behind an OpenAI-compatible endpoint, called with the ``openai`` SDK."""

    def __init__(self, model: str, base_url: str | None) -> None:
        from openai import OpenAI

        self.model, self.base_url = model, base_url
        self.label = f"{model} at {base_url or 'api.openai.com'}"
        self._warm = False
        self.client = OpenAI(
            base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "tunesmith", max_retries=1
        )

    def complete(self, conversations: list[list[dict[str, str]]], params: Any) -> list[str]:
        import openai

        kw: dict[str, Any] = {"temperature": 0.0, "max_tokens": 64}
        if params is not None:
            kw.update(
                {
                    k: v
                    for k, v in (
                        ("temperature", params.temperature),
                        ("top_p", params.top_p),
                        ("seed", params.seed),
                    )
                    if v is not None
                }
            )
            if params.max_completions_tokens is not None:
                kw["max_tokens"] = params.max_completions_tokens

        def one(conv: list[dict[str, str]]) -> str:
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=conv, **kw)  # type: ignore[arg-type]
            except openai.APIConnectionError:
                raise TunesmithError(
                    f"Cannot reach the judge at {self.base_url or 'the OpenAI API'}.",
                    "Start the server (e.g. `tunesmith serve`) or fix --judge-url / the grader's base_url.",
                ) from None
            except openai.APIStatusError as exc:
                raise TunesmithError(
                    f"The judge at {self.base_url or 'the OpenAI API'} answered HTTP {exc.status_code} for model "
                    f"{self.model!r}: {str(exc)[:300]}.",
                    "Check the grader's model name against the server's /v1/models, and the API key.",
                ) from None
            return resp.choices[0].message.content or ""

        # the first request alone (a fresh server loads the model on it: tunesmith serve raced on concurrent
        # first requests, ImportError from transformers' lazy imports), then a few in flight: servers batch
        # them (tunesmith serve, vLLM); results keep their order
        first = [one(conversations[0])] if conversations and not self._warm else []
        self._warm = True
        rest = conversations[len(first) :]
        with ThreadPoolExecutor(max_workers=min(CONCURRENT_REQUESTS, max(1, len(rest)))) as pool:
            return first + list(pool.map(one, rest))

    def close(self) -> None:
        self.client.close()


class LocalJudge(JudgeClient):
    """A judge model loaded in this process (an alias or folder), greedy decoding."""

    def __init__(self, model: str) -> None:
        from tunesmith.models.load import SMOLLM2, TINY

        self.model = model
        self.weak = model in (SMOLLM2, TINY)
        self.label = f"{model} (in-process" + ("; weak judge)" if self.weak else ")")
        self._loaded: tuple[Any, Any] | None = None

    def complete(self, conversations: list[list[dict[str, str]]], params: Any) -> list[str]:
        from tunesmith.models.generate import GenerationSettings, generate
        from tunesmith.models.inference import load_for_inference

        if self._loaded is None:
            self._loaded = load_for_inference(self.model, None)
        max_tokens = (params.max_completions_tokens if params is not None else None) or 32
        gens = generate(*self._loaded, conversations, GenerationSettings(max_tokens=max_tokens), batch_size=8)
        return [g.text for g in gens]

    def close(self) -> None:
        self._loaded = None


def judge_client(model: str, base_url: str | None, endpoint: str | None = None) -> JudgeClient:
    """Where ``model`` is asked (the order in the module docstring).

    Raises:
        TunesmithError: when ``model`` is neither local nor reachable through an endpoint or an API key.
    """
    url = base_url or endpoint or os.environ.get("TUNESMITH_JUDGE_URL") or os.environ.get("OPENAI_BASE_URL")
    if url:
        return EndpointJudge(model, url)
    from tunesmith.models.load import is_embedded

    if is_embedded(model) or Path(model).expanduser().is_dir():
        return LocalJudge(model)
    if os.environ.get("OPENAI_API_KEY"):
        return EndpointJudge(model, None)
    raise TunesmithError(
        f"The judge model {model!r} is not a local model and no endpoint is set.",
        "Pass --judge-url http://HOST:PORT/v1 (any OpenAI-compatible server), set the grader's base_url, or "
        "use model 'smollm2-135m-instruct' (embedded, offline, weak).",
    )


class _JudgeGrader(Grader):
    judge = True

    def __init__(self, spec: Any, endpoint: str | None = None) -> None:
        super().__init__(spec)
        self.client = judge_client(spec.model, spec.base_url, endpoint)

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "model": self.client.label, "weak": self.client.weak}
        return {**d, "note": WEAK_NOTE} if self.client.weak else d

    def close(self) -> None:
        self.client.close()

    def _ask(self, samples: list[dict[str, Any]], items: list[dict[str, Any]], instruction: str) -> list[str]:
        convs = [
            conversation(self.spec.input, {"sample": s, "item": i}, instruction, self.name)
            for s, i in zip(samples, items, strict=True)
        ]
        return self.client.complete(convs, self.spec.sampling_params)


class ScoreModelGrader(_JudgeGrader):
    """OpenAI's ``score_model``: the judge gives a number in ``range`` (default [0, 1])."""

    @property
    def pass_threshold(self) -> float:
        lo, hi = self.spec.score_range
        t = self.spec.pass_threshold
        return (lo + hi) / 2 if t is None else float(t)

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        lo, hi = self.spec.score_range
        replies = self._ask(samples, items, f"Reply with only the score: a number from {lo:g} to {hi:g}.")
        out = []
        for reply in replies:
            score = parse_score(reply, lo, hi)
            out.append(
                self._grade(lo, note=f"no score in reply: {reply[:200]!r}")
                if score is None
                else self._grade(score)
            )
        return out


class LabelModelGrader(_JudgeGrader):
    """OpenAI's ``label_model``: the judge picks one of ``labels``; 1.0 when it is in ``passing_labels``."""

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        labels = self.spec.labels
        replies = self._ask(samples, items, f"Reply with only one of these labels: {', '.join(labels)}.")
        out = []
        for reply in replies:
            label = parse_label(reply, labels)
            score = 1.0 if label in self.spec.passing_labels else 0.0
            note = "" if label is not None else f"no label in reply: {reply[:200]!r}"
            out.append(self._grade(score, label=label, note=note))
        return out


def conversation(
    messages: Sequence[Any], context: dict[str, Any], instruction: str, grader: str
) -> list[dict[str, str]]:
    """The judge's chat messages: ``messages`` rendered with ``context``, ``instruction`` closing the last
    user turn (or as a user turn of its own)."""
    conv = [
        {
            "role": "system" if m.role == "developer" else m.role,
            "content": render(_text(m.content, grader), context, grader=grader),
        }
        for m in messages
    ]
    if conv and conv[-1]["role"] == "user":
        conv[-1] = {"role": "user", "content": conv[-1]["content"].rstrip() + "\n\n" + instruction}
    else:
        conv.append({"role": "user", "content": instruction})
    return conv


def _text(content: Any, grader: str) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif (
            isinstance(p, dict)
            and p.get("type") in ("input_text", "output_text")
            and isinstance(p.get("text"), str)
        ):
            out.append(p["text"])
        else:
            kind = p.get("type") if isinstance(p, dict) else type(p).__name__
            raise TunesmithError(
                f"Grader {grader!r}: message content of type {kind!r} is not supported (text only).",
                'Use a string, or {"type": "input_text", "text": ...}.',
            )
    return "\n".join(out)


def _json_result(reply: str) -> Any:
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        return None
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        for key in ("result", "score", "label", "verdict"):
            if key in obj:
                return obj[key]
    return None


def parse_score(reply: str, lo: float, hi: float) -> float | None:
    """The score in a judge's ``reply``: ``{"result": x}``, else the first number in [lo, hi]; None if none."""
    res = _json_result(reply)
    if isinstance(res, int | float) and not isinstance(res, bool) and lo <= res <= hi:
        return float(res)
    for m in _NUMBER.finditer(reply):
        x = float(m.group(0))
        if lo <= x <= hi:
            return x
    return None


def parse_label(reply: str, labels: Sequence[str]) -> str | None:
    """The one label a judge's ``reply`` names (``{"result": label}`` or by ``data.labels.match``); None if none."""
    from tunesmith.data.labels import match

    res = _json_result(reply)
    if isinstance(res, str) and res in labels:
        return res
    return match(reply, list(labels)).label


@dataclass(frozen=True)
class Verdicts:
    """A pairwise comparison of answers X against answers Y, each pair judged in both orders."""

    wins: int
    ties: int
    losses: int
    first_position_rate: float | None  # share of decided verdicts that chose the answer shown first
    consistency: float  # share of pairs whose two orders agree
    unparsed: int
    rows: list[str]  # per pair: win / tie / loss

    def summary(self) -> dict[str, Any]:
        n = max(1, self.wins + self.ties + self.losses)
        return {
            "n": self.wins + self.ties + self.losses,
            "win": self.wins / n,
            "tie": self.ties / n,
            "loss": self.losses / n,
            "first_position_rate": self.first_position_rate,
            "order_consistency": self.consistency,
            "unparsed": self.unparsed,
        }


class PairwiseJudge:
    """tunesmith's ``pairwise`` judge: which of two answers is better (A, B or tie). ``compare`` shows each
    pair in both orders (X first, then Y first) so position bias is measured, not hidden: a pair counts as a
    win (loss) only when X (Y) is preferred in both orders; anything else is a tie."""

    judge = True
    kind = "pairwise"

    def __init__(self, spec: Any, endpoint: str | None = None) -> None:
        self.spec, self.name = spec, spec.name
        self.client = judge_client(spec.model, spec.base_url, endpoint)

    def describe(self) -> dict[str, Any]:
        d = {"type": "pairwise", "judge": True, "model": self.client.label, "weak": self.client.weak}
        return {**d, "note": WEAK_NOTE} if self.client.weak else d

    def close(self) -> None:
        self.client.close()

    def compare(
        self, items: Sequence[dict[str, Any]], answers_x: Sequence[str], answers_y: Sequence[str]
    ) -> Verdicts:
        """Judge X against Y on every item, in both orders. Raises TunesmithError as the judge's client does."""
        first = self._judge(items, answers_x, answers_y)  # X shown as A
        second = self._judge(items, answers_y, answers_x)  # Y shown as A
        rows, decided, first_pos, agree, unparsed = [], 0, 0, 0, 0
        for v1, v2 in zip(first, second, strict=True):
            unparsed += (v1 is None) + (v2 is None)
            x1 = {"A": "x", "B": "y"}.get(v1 or "", "tie")
            x2 = {"A": "y", "B": "x"}.get(v2 or "", "tie")
            rows.append("win" if x1 == x2 == "x" else "loss" if x1 == x2 == "y" else "tie")
            agree += x1 == x2
            for v in (v1, v2):
                if v in ("A", "B"):
                    decided += 1
                    first_pos += v == "A"
        return Verdicts(
            wins=rows.count("win"),
            ties=rows.count("tie"),
            losses=rows.count("loss"),
            first_position_rate=first_pos / decided if decided else None,
            consistency=agree / len(rows) if rows else 0.0,
            unparsed=unparsed,
            rows=rows,
        )

    def _judge(self, items: Sequence[dict[str, Any]], a: Sequence[str], b: Sequence[str]) -> list[str | None]:
        convs = []
        for item, x, y in zip(items, a, b, strict=True):
            ctx = {"item": dict(item), "sample_a": make_sample(x), "sample_b": make_sample(y)}
            messages = self.spec.input or default_pairwise_messages(item)
            convs.append(conversation(messages, ctx, "Reply with only A, B or tie.", self.name))
        return [parse_verdict(r) for r in self.client.complete(convs, self.spec.sampling_params)]


def default_pairwise_messages(item: dict[str, Any]) -> list[Any]:
    """The built-in pairwise rubric (used when the grader has no ``input``)."""
    from tunesmith.graders.spec import Message

    ref = "\n\nReference answer:\n{{item.reference}}" if item.get("reference") else ""
    return [
        Message(role="system", content="You compare two answers to the same request and say which is better: "
                "correct first, then helpful and in the requested style. Length alone is not better."),
        Message(role="user", content="Request:\n{{item.input}}" + ref
                + "\n\nAnswer A:\n{{sample_a.output_text}}\n\nAnswer B:\n{{sample_b.output_text}}\n\nWhich answer is better?"),
    ]  # fmt: skip


def parse_verdict(reply: str) -> str | None:
    """``A``, ``B`` or ``tie`` from a pairwise judge's reply; None when it names none of them."""
    res = _json_result(reply)
    text = str(res) if isinstance(res, str) else reply
    bare = text.strip().strip(".!*\"' ").casefold()
    if bare in ("a", "b"):
        return bare.upper()
    if bare.startswith(("tie", "draw", "equal", "both")):
        return "tie"
    m = re.search(r"\b(?:answer|option)\s+([AB])\b", text, re.I) or re.search(r"\b([AB])\b", text)
    if m:
        return m.group(1).upper()
    return "tie" if re.search(r"\btie\b", text, re.I) else None
