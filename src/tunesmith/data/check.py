"""`tunesmith data check`: every error with its line, quality warnings, and stats, as one ``Report``.

``validate_data`` reads the file (``formats.load_data`` collects per-line errors), adds file-level errors
(``too_few_examples``, ``template_error``), runs the quality checks of ``quality.py`` and measures token
lengths with the model's own chat template (``tokstats.py``). It never raises for bad data: a file that
cannot be read at all becomes one error in the report.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.config import Task
from tunesmith.data import quality
from tunesmith.data.formats import Columns, Issue, LoadedData, default_system_prompt, load_data, to_chat
from tunesmith.data.labels import label_collisions
from tunesmith.data.quality import Finding, View
from tunesmith.data.shared import shared_stats
from tunesmith.data.template_check import Example, check_template
from tunesmith.data.tokstats import Conversation, TokenResult, measure

MIN_EXAMPLES = 10
MIN_TEXT_CHARS = 1_000  # raw text (cpt) with fewer than MIN_EXAMPLES documents passes when at least this long
FILE_LEVEL = {"empty_file", "missing_column"}  # errors that already say the whole file is unusable


@dataclass(frozen=True)
class Report:
    """The result of a data check, in the ``--json`` shape of issue 2."""

    ok: bool
    format: str
    n_examples: int
    errors: list[Issue]
    warnings: list[Finding]
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "format": self.format,
            "n_examples": self.n_examples,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
            "stats": self.stats,
        }


def validate_data(
    path: Path | str,
    *,
    task: Task | None = None,
    holdout: Path | str | None = None,
    tokenizer: Any = None,
    max_seq_len: int = 1024,
    columns: Columns = Columns(),
    system_prompt: str | None = None,
    model_name: str | None = None,
) -> Report:
    """Check one training file (and optionally its hold-out file); see the module docstring."""
    data = load_data(path, task, columns)
    errors = list(data.errors)
    errors += _too_few(data)
    fmt = data.task or "unknown"
    held = _load_holdout(holdout, data, columns, errors)
    views = _views(data)
    held_views = _views(held) if held is not None else []
    if held_views and views and views[0].label is not None:
        held_views = [replace(v, label=v.output.strip()) for v in held_views]
    tokens = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokstats") as pool:
        if tokenizer is not None and data.records and data.task:
            # Token stats run beside the quality checks: the tokenizer's Rust backend releases the GIL, so
            # its batches use the core that the single-threaded quality pass leaves idle.
            prompt = (
                system_prompt if system_prompt is not None else default_system_prompt(data.rows, data.task)
            )
            convs = _conversations(data, prompt)
            tokens = pool.submit(measure, tokenizer, convs, max_seq_len)
        norm = quality.normalize_views(views) if views else None  # once: every quality check shares it
        warnings = _quality(views, held_views, norm)
        stats = _stats(data, views)
        tok = tokens.result() if tokens is not None else None
    if norm is not None and (shared := shared_stats(norm.factored, len(views), tokenizer)):
        stats["shared"] = shared  # after the token-stats thread: one tokenizer, one thread at a time
    if tok is not None:
        errors += [
            Issue(
                line,
                "template_error",
                f"Line {line}: the model's chat template rejects this conversation: {msg}",
                "Fix the order of the roles (most templates want user/assistant turns alternating), or pick another model.",
            )
            for line, msg in tok.template_errors
        ]
        warnings += _truncation(tok, max_seq_len)
        if data.task != "preference":  # after the token-stats thread: one tokenizer, one thread at a time
            warnings += check_template(
                tokenizer,
                [Example(c.line, c.messages, c.tools) for c in convs if c.messages is not None],
                max_len=max_seq_len,
            )
        stats.update(_token_stats(tok, max_seq_len, model_name or getattr(tokenizer, "name_or_path", "")))
    errors.sort(key=lambda e: (e.line, e.code))
    return Report(not errors, fmt, len(data.records), errors, warnings, stats)


def _too_few(data: LoadedData) -> list[Issue]:
    if any(e.line == 0 or e.code in FILE_LEVEL for e in data.errors) or len(data.records) >= MIN_EXAMPLES:
        return []  # an unreadable or empty file already has its one error
    if data.task == "text" and sum(len(r["text"]) for r in data.rows) >= MIN_TEXT_CHARS:
        return []  # a few long documents are fine for continued pre-training: they are cut into blocks
    return [
        Issue(
            0,
            "too_few_examples",
            f"Only {len(data.records)} usable example(s); at least {MIN_EXAMPLES} are needed to fine-tune (a few hundred to learn a task well).",
            "Add more examples, or use a prompted model with few-shot examples instead (`tunesmith plan`).",
        )
    ]


def _load_holdout(
    holdout: Path | str | None, data: LoadedData, columns: Columns, errors: list[Issue]
) -> LoadedData | None:
    if holdout is None:
        return None
    held = load_data(holdout, data.task, columns)
    name = Path(holdout).name
    errors += [Issue(e.line, e.code, f"{name} (hold-out): {e.message}", e.hint) for e in held.errors]
    return held


def _views(data: LoadedData) -> list[View]:
    if not data.task:
        return []
    return quality.infer_labels([quality.view_of(r.line, r.data, data.task) for r in data.records])


def _quality(views: list[View], held: list[View], norm: quality.Normalized | None) -> list[Finding]:
    if not views or norm is None:
        return []
    return [
        *quality.duplicates(views, held, norm),
        *quality.label_balance(views),
        *quality.length_bias(views, norm),
        *quality.pii(views, norm),
        *quality.diversity(views, norm),
        *label_collisions(views),
    ]


def _conversations(data: LoadedData, system_prompt: str | None) -> list[Conversation]:
    task = data.task
    out: list[Conversation] = []
    for r in data.records:
        if task == "text":
            out.append(Conversation(r.line, None, r.data["text"]))
        elif task == "preference":
            for side in ("chosen", "rejected"):
                out.append(Conversation(r.line, list(r.data["prompt"]) + list(r.data[side])))
        else:
            out.append(Conversation(r.line, to_chat(r.data, task, system_prompt), tools=r.data.get("tools")))
    return out


def _stats(data: LoadedData, views: list[View]) -> dict[str, Any]:
    stats: dict[str, Any] = {"examples": len(data.records)}
    if views and views[0].label is not None:
        stats["labels"] = dict(Counter(v.label for v in views).most_common())
    if data.task == "chat" and data.records:
        turns = np.array([len(r.data["messages"]) for r in data.records])
        stats["turns"] = {
            "min": int(turns.min()),
            "mean": round(float(turns.mean()), 2),
            "max": int(turns.max()),
        }
    elif data.records:
        stats["turns"] = {"min": 2, "mean": 2.0, "max": 2} if data.task != "text" else None
    if any(data.normalised.values()):  # reading stripped a BOM, fixed line ends or NFC-normalised text
        stats["normalised"] = {k: v for k, v in sorted(data.normalised.items()) if v}
    return stats


def _token_stats(tok: TokenResult, max_seq_len: int, model: str) -> dict[str, Any]:
    lens = tok.lengths
    pct = {f"p{q}": int(np.percentile(lens, q)) for q in (50, 90, 95, 99)} if len(lens) else {}
    return {
        "model": model,
        "max_seq_len": max_seq_len,
        "tokens_per_example": {
            "min": int(lens.min()),
            "mean": round(float(lens.mean()), 1),
            **pct,
            "max": int(lens.max()),
        }
        if len(lens)
        else None,
        "tokens_sampled_from": int(len(lens)),
        "sampled": tok.sampled,
        "truncated_examples": len(tok.truncated),
        "train_tokens_per_epoch": tok.tokens_per_epoch,
        "train_tokens_per_epoch_estimated": tok.sampled,
    }


def _truncation(tok: TokenResult, max_seq_len: int) -> list[Finding]:
    if not tok.truncated:
        return []
    lost = sum(tok.truncated.values())
    lines = sorted(tok.truncated)
    worst = max(tok.truncated, key=tok.truncated.get)
    cut = tok.answer_cut
    cut_msg = (
        f"the assistant answer itself is cut in {len(cut)} of them (lines {', '.join(map(str, cut[: quality.SHOW]))}{'...' if len(cut) > quality.SHOW else ''}), so the model learns unfinished answers and never to stop"
        if cut
        else "only the prompt side is cut, the answers are intact"
    )
    if tok.answer_cut_checked < len(tok.truncated):
        cut_msg += f" (answers checked in the first {tok.answer_cut_checked})"
    return [
        Finding(
            "truncation",
            f"{len(lines)} example(s) are longer than max_seq_len={max_seq_len} with the model's chat template; {lost:,} tokens are lost in total (line {worst} loses {tok.truncated[worst]:,}); {cut_msg}. Raise data.max_seq_len or shorten these examples.",
            lines,
        )
    ]
