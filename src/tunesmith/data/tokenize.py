"""Chat templating with loss masks: exactly which tokens are trained.

The conversation is rendered once with the model's own chat template and tokenized with offsets. The
character span of each assistant turn is found by rendering the prefix before it (with the generation
prompt) and the prefix through it: every token inside that span is trained, so the end-of-turn token the
template writes after the answer (``<|im_end|>`` for ChatML) is trained too and the model learns to stop.
Masks come from character spans, not token ids, so they are right whatever the pad token is (a pad token
equal to EOS still leaves EOS in the labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.render import render_chat
from tunesmith.errors import TunesmithError

IGNORE_INDEX = -100


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss
    n_tokens_full: int  # before truncation
    truncated_answer: bool = False  # a trained token was cut by max_len
    spans: list[tuple[int, int]] = field(default_factory=list)  # trained character spans in ``text``
    text: str = ""

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def render(
    tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False, tools: Any = None
) -> str:
    """The conversation as text: ``data.render.render_chat`` (the one prompt renderer every layer uses).

    Raises:
        TunesmithError: when the chat template refuses the conversation.
    """
    return render_chat(tokenizer, messages, tools=tools or None, add_generation_prompt=add_generation_prompt)


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans of the assistant turns that carry loss (weight != 0)."""
    full = render(tokenizer, messages, tools=tools)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or msg.get("weight", 1) == 0:
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools) if i else ""
        through = render(tokenizer, messages[: i + 1], tools=tools)
        if not full.startswith(through) or not through.startswith(before):
            raise TunesmithError(
                "This model's chat template does not render conversations incrementally, so the assistant "
                "turns cannot be located for loss masking.",
                "Set data.train_on: all, or use a model with a standard chat template.",
            )
        end = len(through.rstrip("\n")) if through.endswith("\n") else len(through)
        spans.append((len(before), end))
    return full, spans


def tokenize_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    max_len: int | None = None,
    train_on: str = "assistant",
    tools: Any = None,
) -> Tokenized:
    """Token ids and labels for one conversation (labels are IGNORE_INDEX outside the trained spans)."""
    text, spans = assistant_spans(tokenizer, messages, tools)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets: list[tuple[int, int]] = enc["offset_mapping"]
    if train_on == "all":
        labels = list(ids)
    else:
        labels = [IGNORE_INDEX] * len(ids)
        si = 0
        for t, (s, e) in enumerate(offsets):
            while si < len(spans) and spans[si][1] <= s:
                si += 1
            if si < len(spans) and s >= spans[si][0] and e <= spans[si][1] and e > s:
                labels[t] = ids[t]
    n_full = len(ids)
    truncated_answer = False
    if max_len is not None and n_full > max_len:
        truncated_answer = any(x != IGNORE_INDEX for x in labels[max_len:])
        ids, labels = ids[:max_len], labels[:max_len]
    return Tokenized(ids, labels, n_full, truncated_answer, spans, text)


def tokenize_text(tokenizer: Any, text: str, max_len: int | None = None) -> Tokenized:
    """Raw text for continued pre-training: every token trained, EOS appended as a document boundary."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    n_full = len(ids)
    if max_len is not None:
        ids = ids[:max_len]
    return Tokenized(ids, list(ids), n_full, n_full > len(ids), [(0, len(text))], text)


def prompt_ids(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> list[int]:
    """Token ids of the conversation so far plus the generation prompt (what inference feeds the model)."""
    text = render(tokenizer, messages, add_generation_prompt=True, tools=tools)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
