"""Token counts of the user's own data, rendered with the model's chat template (what training computes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.advisor.estimate import Workload
from tunesmith.config import Task
from tunesmith.data.formats import Columns, default_system_prompt, load_records_or_raise, to_chat
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat, tokenize_text
from tunesmith.errors import TunesmithError


def tokenizer_for(model: str) -> tuple[Any, bool]:
    """``(tokenizer, approximate)``: the model's own tokenizer when its folder has one; otherwise the
    embedded SmolLM2 tokenizer and chat template (a built-in size class or a bare config.json), flagged
    approximate (Llama-family tokenizers count within ~10-20% of each other on English text)."""
    from tunesmith.models.load import SMOLLM2, load_tokenizer

    path = Path(model).expanduser()
    folder = path.parent if path.is_file() else path
    try:
        if folder.is_dir() and (folder / "tokenizer_config.json").exists():
            return load_tokenizer(str(folder)), False
        if not path.exists() and "/" not in model:
            from tunesmith.models.load import ALIASES

            if model in ALIASES:
                return load_tokenizer(model), False
    except TunesmithError:
        pass  # no chat template: fall back to the approximate count below
    return load_tokenizer(SMOLLM2), True


def measure_workload(
    data: Path,
    model: str,
    epochs: float,
    task: Task | None = None,
    max_seq_len: int | None = None,
    columns: Columns = Columns(),
) -> Workload:
    """Examples, average and longest sequence, and average answer length of a data file, tokenized exactly
    as training will (chat template, answer spans)."""
    loaded = load_records_or_raise(data, task, columns)
    tok, approx = tokenizer_for(model)
    rows = loaded.rows
    task = loaded.task
    system = default_system_prompt(rows, task) if task in ("classification", "extraction") else None
    lengths: list[int] = []
    outputs: list[int] = []
    for rec in loaded.records:
        if task == "text":
            t = tokenize_text(tok, rec.data["text"])
            lengths.append(t.n_tokens_full)
            outputs.append(0)
            continue
        t = tokenize_chat(tok, to_chat(rec.data, task, system))
        lengths.append(t.n_tokens_full)
        outputs.append(sum(1 for x in t.labels if x != IGNORE_INDEX))
    if max_seq_len:
        lengths = [min(n, max_seq_len) for n in lengths]
    name = getattr(tok, "name_or_path", "") or "the model's"
    how = f"{len(lengths)} examples in {data}, tokenized with the chat template of {Path(name).name or name}"
    if approx:
        how += " (approximate: the model folder has no tokenizer, SmolLM2's was used)"
    return Workload(
        examples=len(lengths),
        avg_tokens=sum(lengths) / len(lengths),
        max_tokens=max(lengths),
        epochs=epochs,
        avg_output_tokens=sum(outputs) / len(outputs),
        source=how,
    )


def given_workload(
    examples: int, avg_tokens: float, epochs: float, avg_output_tokens: float | None = None
) -> Workload:
    """A workload from ``--examples N --avg-tokens T``; answers are assumed a quarter of each sequence."""
    if examples < 1 or avg_tokens < 1:
        raise TunesmithError(
            f"--examples ({examples}) and --avg-tokens ({avg_tokens}) must be at least 1.",
            "Example: --examples 2000 --avg-tokens 350.",
        )
    out = avg_output_tokens if avg_output_tokens is not None else avg_tokens / 4
    return Workload(
        examples=examples,
        avg_tokens=float(avg_tokens),
        max_tokens=int(avg_tokens * 2),
        epochs=epochs,
        avg_output_tokens=out,
        source=f"{examples} examples x {avg_tokens:g} tokens (given; longest assumed 2x the average, "
        f"answers {out:g} tokens)",
    )
