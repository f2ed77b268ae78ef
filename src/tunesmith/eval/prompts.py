"""The prompts each candidate sees: zero-shot, few-shot (similar or random examples), and reworded inputs.

- **zero-shot**: the system prompt (from the data/config, or generated from the label set / JSON keys exactly
  as training generates it) and the input. The fine-tuned model gets this same prompt: it is what it was
  trained on.
- **few-shot**: the same system prompt, then ``k`` training examples as earlier user/assistant turns, then the
  input. ``similar`` picks the ``k`` training inputs nearest to this input by cosine similarity of
  ``minilm`` sentence embeddings (the best-case few-shot prompt); ``random`` draws ``k`` with a fixed seed.
  The most similar example goes last (closest to the question). An exact duplicate of the input in the
  training set is never shown, so few-shot cannot copy a leaked answer.
- **reworded**: the light rewording used for consistency: a greeting, a sign-off, changed case/spacing.
  Seeded, so every candidate sees the same variants.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.eval.tasks.base import EvalTask

_GREETINGS = ("Hi,", "Hello team,", "Good morning,", "Hey there,", "Hi support,")
_SIGNOFFS = ("Thanks.", "Regards", "Thank you!", "Cheers", "Best,")


def as_task(task: EvalTask | str) -> EvalTask:
    """A task object; a task name gives that task's plain form (no label set, no answer profile)."""
    if isinstance(task, str):
        from tunesmith.eval.tasks import task_for

        return task_for(task)  # type: ignore[return-value]
    return task


def query_messages(
    record: dict[str, Any], task: EvalTask | str, system_prompt: str | None
) -> list[dict[str, Any]]:
    """The conversation up to (not including) the reference answer."""
    return as_task(task).query(record, system_prompt)


def reference(record: dict[str, Any], task: EvalTask | str) -> str:
    """The reference answer as text."""
    return as_task(task).reference(record)


def input_text(record: dict[str, Any], task: EvalTask | str) -> str:
    """The text a user wrote (last user turn), used for similarity and shown in the report."""
    return as_task(task).input_text(record)


def few_shot_messages(
    record: dict[str, Any], task: EvalTask | str, system_prompt: str | None, shots: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """System prompt, then each shot as a user/assistant pair, then the query."""
    t = as_task(task)
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for shot in shots:
        turns = t.query(shot, None) + [t.answer_message(shot)]
        msgs += [m for m in turns if m["role"] != "system"]
    return msgs + [m for m in t.query(record, None) if m["role"] != "system"]


def select_shots(
    queries: Sequence[dict[str, Any]],
    pool: Sequence[dict[str, Any]],
    task: EvalTask | str,
    k: int,
    selection: str,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """``k`` examples from ``pool`` for every query (see module docstring)."""
    if not pool:
        raise TunesmithError(
            "The few-shot baseline needs training examples to draw from.",
            "Pass --train FILE (or evaluate a run whose config names data.train).",
        )
    q_text = [input_text(r, task) for r in queries]
    p_text = [input_text(r, task) for r in pool]
    if selection == "random":
        rng = random.Random(seed)
        out = []
        for q in q_text:
            allowed = [i for i, t in enumerate(p_text) if t.strip() != q.strip()]
            out.append([pool[i] for i in rng.sample(allowed, min(k, len(allowed)))])
        return out
    if selection != "similar":
        raise TunesmithError(f"Unknown few-shot selection {selection!r}.", "Use similar or random.")
    sims = _cosine_matrix(q_text, p_text)
    out = []
    for qi, q in enumerate(q_text):
        ranked = sorted(
            (i for i in range(len(pool)) if p_text[i].strip() != q.strip()), key=lambda i: -sims[qi][i]
        )
        out.append([pool[i] for i in reversed(ranked[:k])])  # most similar last
    return out


def _cosine_matrix(queries: list[str], docs: list[str]) -> list[list[float]]:
    from sentence_transformers import SentenceTransformer

    from tunesmith.models.load import minilm_dir

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    q = model.encode(queries, normalize_embeddings=True, convert_to_tensor=True, batch_size=64)
    d = model.encode(docs, normalize_embeddings=True, convert_to_tensor=True, batch_size=64)
    return (q @ d.T).tolist()


def reword(record: dict[str, Any], task: EvalTask | str, seed: int) -> dict[str, Any]:
    """A lightly reworded copy of ``record`` (same meaning, same reference answer)."""
    rng = random.Random(seed)
    text = input_text(record, task)
    variant = rng.choice(
        [
            f"{rng.choice(_GREETINGS)} {text}",
            f"{text} {rng.choice(_SIGNOFFS)}",
            text[:1].lower() + text[1:] if text[:1].isupper() else text[:1].upper() + text[1:],
            "  ".join(text.split(" ")),
        ]
    )
    return as_task(task).with_input(record, variant)
