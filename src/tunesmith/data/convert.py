"""`tunesmith data convert`: classification / extraction / completion tables to chat JSONL.

The generated system prompt names the label set (classification) or the JSON keys (extraction), so the
converted file trains and evaluates the same way. ``--with-context INDEX`` then hands the chat rows to
``add_context``, a rows -> rows step the caller passes in (the CLI passes ``tunesmith.rag.raft.context_adder``:
retrieved passages plus distractors in the prompt, RAFT-style), so ``data`` never imports ``rag``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import Task
from tunesmith.data.formats import Columns, default_system_prompt, load_records_or_raise, to_chat
from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    n_rows: int
    source_format: str
    system_prompt: str | None
    with_context: bool


def convert_file(
    path: Path | str,
    out: Path | str,
    *,
    task: Task | None = None,
    columns: Columns = Columns(),
    system_prompt: str | None = None,
    add_context: Callable[[list[dict]], list[dict]] | None = None,
    force: bool = False,
) -> ConvertResult:
    """Write ``path`` as chat JSONL to ``out`` and say what was done.

    ``add_context``: applied to the chat rows before writing (``--with-context``); chat input is accepted
    only with it.

    Raises:
        TunesmithError: on unreadable or invalid data, data with no chat form (preference, raw text), chat
        data without ``add_context``, or an ``out`` that is a folder or the input file, or that exists
        already while ``force`` is not set (nothing is ever replaced by surprise).
    """
    _refuse_out(Path(path), Path(out), force)
    data = load_records_or_raise(path, task, columns)
    fmt = data.task or "unknown"
    if fmt in ("preference", "text"):
        raise TunesmithError(
            f"{path} holds {fmt} data, which has no single-answer chat form.",
            "convert takes classification, extraction or prompt/completion data (and chat with --with-context).",
        )
    if fmt == "chat" and add_context is None:
        raise TunesmithError(
            f"{path} is already chat data; there is nothing to convert.",
            "Use --with-context INDEX to add retrieved passages, or train on it as it is.",
        )
    prompt = system_prompt if system_prompt is not None else default_system_prompt(data.rows, fmt)
    rows = [{"messages": to_chat(r, fmt, prompt)} for r in data.rows]
    if add_context is not None:
        rows = add_context(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ConvertResult(out, len(rows), fmt, prompt, add_context is not None)


def _refuse_out(path: Path, out: Path, force: bool) -> None:
    if out.is_dir():
        raise TunesmithError(
            f"--out {out} is a folder.", "Pass a file name, e.g. data/train.chat.jsonl.", exit_code=2
        )
    if out.resolve() == path.resolve() or (out.exists() and path.exists() and os.path.samefile(out, path)):
        raise TunesmithError(
            "--out is the input file; converting in place would destroy it.",
            "Pick another output file.",
            exit_code=2,
        )
    if out.exists() and not force:
        raise TunesmithError(
            f"--out {out} already exists; nothing was written.",
            "Pass --force to replace it, or pick another output file.",
            exit_code=2,
        )
