"""RAFT (retrieval-augmented fine-tuning; Zhang et al. 2024): training rows that carry retrieved context.

``add_context(rows, index_dir)`` turns chat (or prompt/completion) rows into rows whose user turn is the RAG
prompt (``build_rag_messages``) over the ``k`` passages retrieved for the question plus ``distractors``
random passages from other documents, shuffled, so the model learns to pick the relevant passage out of
noise. The answer gets a ``[n]`` citation for the passage that supports it (when one does), so the model
learns to cite in the same format ``rag ask`` checks. Rows whose answer no passage supports keep their
answer uncited (RAFT keeps such rows: the model must still answer from what it learned).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.rag.answer import build_rag_messages, cite
from tunesmith.rag.retrieve import Index, Passage, open_index, retrieve


def add_context(
    rows: list[dict[str, Any]],
    index_dir: Path | str | Index,
    k: int = 3,
    distractors: int = 2,
    seed: int = 0,
    mode: str = "hybrid",
) -> list[dict[str, Any]]:
    """Rows with ``messages`` = [system, user (passages + question), assistant (answer with citation)].
    Each output row also has ``rag_sources`` (the sources shown, in order) for inspection."""
    if k < 0 or distractors < 0 or k + distractors == 0:
        raise TunesmithError(
            f"k={k}, distractors={distractors}: need at least one passage per row.", "Use k >= 1."
        )
    index = index_dir if isinstance(index_dir, Index) else open_index(index_dir)
    rng = random.Random(seed)
    ids, _ = index.dense
    pool = [int(i) for i in ids]
    out = []
    for n, row in enumerate(rows, start=1):
        system, question, answer = _split_row(row, n)
        shown = retrieve(index, question, k=k, mode=mode) if k else []  # type: ignore[arg-type]
        shown = shown + _distractors(index, pool, shown, distractors, rng)
        rng.shuffle(shown)
        messages = build_rag_messages(question, shown, system)
        cited, _ = cite(answer, shown)
        out.append(
            {
                "messages": [*messages, {"role": "assistant", "content": cited}],
                "rag_sources": [p.source for p in shown],
            }
        )
    return out


def context_adder(
    index: Path | str, *, k: int = 3, distractors: int = 2, seed: int = 0
) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """``rows -> add_context(rows, index, ...)`` for ``tunesmith data convert --with-context``, after checking
    that ``index`` is an index folder or a ``postgresql://`` URL (so a wrong path fails before any data load).

    Raises:
        TunesmithError: (exit code 2) when ``index`` is neither an existing folder nor a server URL.
    """
    from tunesmith.rag.pgstore import is_server_url

    if not is_server_url(index) and not Path(index).is_dir():
        raise TunesmithError(
            f"--with-context {index} is not an index folder.",
            "Build one first with `tunesmith rag index DOCS --index INDEX`.",
            exit_code=2,
        )
    return lambda rows: add_context(rows, index, k=k, distractors=distractors, seed=seed)


def _distractors(
    index: Index, pool: list[int], shown: list[Passage], n: int, rng: random.Random
) -> list[Passage]:
    """``n`` random chunks from documents other than the retrieved ones (from any document if too few)."""
    if n == 0 or not pool:
        return []
    taken = {p.chunk_id for p in shown}
    sources = {p.source for p in shown}
    candidates = rng.sample(pool, min(len(pool), max(4 * n, n + len(taken) + 8)))
    rows = index.store.chunks(candidates)
    other = [c for c in candidates if c in rows and c not in taken and rows[c].source not in sources]
    same = [c for c in candidates if c in rows and c not in taken and rows[c].source in sources]
    picked = (other + same)[:n]
    return [Passage(rows[c].text, rows[c].source, 0.0, c, rows[c].heading, rows[c].location) for c in picked]


def _split_row(row: dict[str, Any], n: int) -> tuple[str | None, str, str]:
    """``(system prompt, question, answer)`` from a chat row (last user + final assistant) or prompt/completion."""
    if isinstance(row.get("messages"), list):
        msgs = row["messages"]
        system = next((m.get("content") for m in msgs if m.get("role") == "system"), None)
        if not msgs or msgs[-1].get("role") != "assistant":
            raise TunesmithError(
                f"Row {n}: the last message is not the assistant's answer.",
                "RAFT rows end with the assistant turn.",
            )
        users = [m for m in msgs[:-1] if m.get("role") == "user"]
        if not users:
            raise TunesmithError(
                f"Row {n}: no user message to use as the question.", "Each row needs a user turn."
            )
        return system, str(users[-1].get("content", "")), str(msgs[-1].get("content", ""))
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return None, row["prompt"], row["completion"]
    raise TunesmithError(
        f"Row {n} is neither a chat row (messages) nor prompt/completion: keys {sorted(row)}.",
        "Convert the data to chat format first (tunesmith data convert).",
    )
