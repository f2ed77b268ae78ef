"""`tunesmith data show`: what the model will actually see and learn from a few examples.

Each example is rendered with the model's chat template and tokenized with the same masks training uses
(``tokenize_chat``); the trained character spans come from the token offsets of the trained tokens.
Findings are computed over the first ``SCAN`` examples (the issues they catch come from the template or
from per-message weights, so a prefix of the file shows them):

- ``eos_not_trained``: a trained assistant turn (any, not only the last) does not end in an end-of-turn/EOS
  token, so the model never learns to stop (a template that writes no end-of-turn after the answer, or
  truncation);
- ``no_trained_tokens``: nothing in the example carries loss (every assistant turn has weight 0, or
  truncation removed the answer);
- ``system_prompt_dropped``: the example has a system message whose text does not appear in the rendered
  conversation: the template silently drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import Task
from tunesmith.data.formats import Columns, default_system_prompt, load_records_or_raise, to_chat
from tunesmith.data.quality import Finding
from tunesmith.data.template_check import untrained_turn_end
from tunesmith.data.tokenize import IGNORE_INDEX, render, tokenize_chat, tokenize_text

SCAN = 200


@dataclass(frozen=True)
class ShownExample:
    line: int
    text: str
    trained_spans: list[tuple[int, int]]  # character spans of ``text`` that carry loss
    n_tokens: int
    n_trained: int


@dataclass(frozen=True)
class ShowResult:
    examples: list[ShownExample]
    findings: list[Finding]
    scanned: int


def show_examples(
    path: Path | str,
    tokenizer: Any,
    n: int = 3,
    *,
    task: Task | None = None,
    columns: Columns = Columns(),
    max_seq_len: int | None = None,
    system_prompt: str | None = None,
) -> ShowResult:
    """Render the first ``n`` examples with trained spans and scan the first ``SCAN`` for findings."""
    data = load_records_or_raise(path, task, columns)
    fmt = data.task
    prompt = system_prompt if system_prompt is not None else default_system_prompt(data.rows, fmt)
    shown: list[ShownExample] = []
    eos_missing: list[int] = []
    untrained: list[int] = []
    dropped: list[int] = []
    stop_ids = _stop_ids(tokenizer)
    records = data.records[: max(n, SCAN)]
    for r in records:
        if fmt == "text":
            t = tokenize_text(tokenizer, r.data["text"], max_seq_len)
            messages = None
        else:
            messages = to_chat(r.data, fmt, prompt)
            t = tokenize_chat(tokenizer, messages, max_seq_len, tools=r.data.get("tools"))
        trained = [i for i, lab in enumerate(t.labels) if lab != IGNORE_INDEX]
        if not trained:
            untrained.append(r.line)
        elif untrained_turn_end(t, stop_ids, None):  # every trained turn, a cut one included
            eos_missing.append(r.line)
        if messages and _system_dropped(tokenizer, messages, t.text):
            dropped.append(r.line)
        if len(shown) < n:
            shown.append(
                ShownExample(
                    r.line, t.text, _char_spans(tokenizer, t.text, t.labels), len(t.input_ids), len(trained)
                )
            )
    return ShowResult(shown, _findings(tokenizer, eos_missing, untrained, dropped), len(records))


def _stop_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _system_dropped(tokenizer: Any, messages: list[dict[str, Any]], text: str) -> bool:
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    if not system:
        return False
    if text == "":
        text = render(tokenizer, messages)
    return any(s.strip() not in text for s in system)


def _char_spans(tokenizer: Any, text: str, labels: list[int]) -> list[tuple[int, int]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans: list[tuple[int, int]] = []
    for (s, e), lab in zip(enc["offset_mapping"], labels, strict=False):
        if lab == IGNORE_INDEX or e <= s:
            continue
        if spans and s <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(e, spans[-1][1]))
        else:
            spans.append((s, e))
    return spans


def _findings(
    tokenizer: Any, eos_missing: list[int], untrained: list[int], dropped: list[int]
) -> list[Finding]:
    out: list[Finding] = []
    eos = tokenizer.eos_token or "EOS"
    if eos_missing:
        out.append(
            Finding(
                "eos_not_trained",
                f"In {len(eos_missing)} example(s) the last trained token is not an end-of-turn/EOS token ({eos!r}): the model will not learn to stop and will ramble until max_new_tokens. Use a chat template that closes the assistant turn with {eos!r}, or raise max_seq_len if truncation cut it.",
                eos_missing,
            )
        )
    if untrained:
        out.append(
            Finding(
                "no_trained_tokens",
                f"{len(untrained)} example(s) have no trained tokens at all (every assistant turn has weight 0, or truncation removed the answer): they cost compute and teach nothing. Set weight 1 on the answer you want learned.",
                untrained,
            )
        )
    if dropped:
        out.append(
            Finding(
                "system_prompt_dropped",
                f"The chat template drops the system prompt in {len(dropped)} example(s): the model never sees it. Put the instructions in the first user message, or use a model whose template supports a system role.",
                dropped,
            )
        )
    return out
