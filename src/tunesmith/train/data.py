"""Training data for sft/cpt: read, refuse or skip bad lines, split off a hold-out, tokenize with loss masks.

Every supervised task trains as chat: ``formats.to_chat`` turns classification/extraction/completion rows
into a user turn and an assistant answer (with the generated system prompt naming the labels or keys), so
one masking path (``data.tokenize.tokenize_chat``) serves them all. Continued pre-training (cpt) trains on
every token; long documents are cut into ``max_seq_len`` windows instead of being truncated, so no text
is thrown away. Before anything is tokenized, the chat template is checked on the training examples
(``data.template_check``: end-of-turn trained on every assistant turn, tool calls and tools rendered,
system prompt kept); a finding stops training before step 1 unless ``--force``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig, Task
from tunesmith.data.formats import Columns, LoadedData, default_system_prompt, load_data, to_chat
from tunesmith.data.quality import Finding
from tunesmith.data.split import holdout_split
from tunesmith.data.template_check import Example, check_template, refuse_template_findings
from tunesmith.data.tokenize import Tokenized, tokenize_chat, tokenize_text
from tunesmith.errors import TunesmithError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """Tokenized train and hold-out examples plus what was dropped on the way."""

    task: Task
    train: list[Tokenized]
    holdout: list[Tokenized]
    system_prompt: str | None
    skipped_lines: int  # bad lines skipped under --force
    truncated_answers: int  # examples whose trained tokens were cut by max_seq_len
    dropped_empty: int  # examples left with no trained token (answer fully truncated)


def prepare_data(cfg: ProjectConfig, tokenizer: Any, *, force: bool = False) -> PreparedData:
    """Load, check, split and tokenize the training data of ``cfg`` for method sft or cpt."""
    d = cfg.data
    if d.train is None:
        raise TunesmithError(
            "No training data: data.train is not set.", "Set data.train: path/to/train.jsonl in the config."
        )
    columns = Columns(d.text_field, d.label_field, d.fields_field)
    train = _load_checked(d.train, d.task, columns, force)
    task = train.task
    assert task is not None  # load_data sets it whenever there are records
    _check_task(task, cfg.train.method, d.train)
    rows = train.rows
    skipped = len(train.errors)
    if d.holdout is not None:
        hold = _load_checked(d.holdout, task, columns, force)
        hold_rows, skipped = hold.rows, skipped + len(hold.errors)
    else:
        train_idx, hold_idx = holdout_split(train, d.holdout_fraction, d.seed, at_least_one=True)
        rows, hold_rows = [rows[i] for i in train_idx], [rows[i] for i in hold_idx]
    system = d.system_prompt or default_system_prompt(train.rows, task)
    if task != "text":
        check_chat_template(train, system, tokenizer, cfg, force=force)
    train_tok = _tokenize_all(rows, task, system, tokenizer, cfg)
    hold_tok = _tokenize_all(hold_rows, task, system, tokenizer, cfg)
    kept = [t for t in train_tok if t.n_trained > 0]
    if not kept:
        raise TunesmithError(
            f"No training example of {d.train} has a token left to train on after truncation to {d.max_seq_len} tokens.",
            "Raise data.max_seq_len, or shorten the prompts.",
        )
    return PreparedData(
        task=task,
        train=kept,
        holdout=[t for t in hold_tok if t.n_trained > 0],
        system_prompt=system,
        skipped_lines=skipped,
        truncated_answers=sum(t.truncated_answer for t in train_tok),
        dropped_empty=len(train_tok) - len(kept),
    )


def check_chat_template(
    data: LoadedData, system: str | None, tokenizer: Any, cfg: ProjectConfig, *, force: bool = False
) -> list[Finding]:
    """The template checks of ``data.template_check`` on the training file's examples, before step 1.

    Returns the findings (logged as warnings) when ``force``.

    Raises:
        TunesmithError: naming each finding and its fix, when there are any and not ``force``.
    """
    examples = [
        Example(r.line, to_chat(r.data, data.task, system), r.data.get("tools")) for r in data.records
    ]
    findings = check_template(tokenizer, examples, max_len=cfg.data.max_seq_len)
    if not force:
        refuse_template_findings(findings, cfg.model.name)
    for f in findings:
        _log.warning("training despite %s (--force): %s", f.code, f.message)
    return findings


def _load_checked(path: Path, task: Task | None, columns: Columns, force: bool) -> LoadedData:
    data = load_data(path, task, columns)
    if data.errors and not force:
        first = "\n".join(
            f"  {path.name} line {e.line}: {_strip_line(e.message, e.line)} ({e.code})"
            for e in data.errors[:5]
        )
        more = f"\n  ... and {len(data.errors) - 5} more" if len(data.errors) > 5 else ""
        raise TunesmithError(
            f"{path} has {len(data.errors)} error(s); training refuses it:\n{first}{more}",
            f"Fix them (`tunesmith data check {path}` shows each with its fix), or pass --force to skip those lines.",
        )
    if not data.records:
        raise TunesmithError(f"{path} holds no usable examples.", f"Run `tunesmith data check {path}`.")
    return data


def _strip_line(message: str, line: int) -> str:
    prefix = f"Line {line}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _check_task(task: Task, method: str, path: Path) -> None:
    if task == "preference":
        raise TunesmithError(
            f"{path} holds preference pairs, which method {method} cannot train on.",
            "Use train.method: dpo (or reward) for preference data.",
        )
    if task == "text" and method == "sft":
        raise TunesmithError(
            f"{path} holds raw text with no answers for supervised fine-tuning to learn.",
            "Use train.method: cpt (continued pre-training) for raw text, or supply chat/completion data.",
        )


def _tokenize_all(
    rows: list[dict], task: Task, system: str | None, tokenizer: Any, cfg: ProjectConfig
) -> list[Tokenized]:
    max_len = cfg.data.max_seq_len
    out: list[Tokenized] = []
    for row in rows:
        if task == "text":
            out.extend(tokenize_windows(tokenizer, row["text"], max_len))
            continue
        train_on = "all" if cfg.train.method == "cpt" else cfg.data.train_on
        msgs = to_chat(row, task, system)
        out.append(tokenize_chat(tokenizer, msgs, max_len, train_on, tools=row.get("tools")))
    return out


def tokenize_windows(tokenizer: Any, text: str, max_len: int) -> list[Tokenized]:
    """A document cut into consecutive windows of at most ``max_len`` tokens (EOS closes the last)."""
    whole = tokenize_text(tokenizer, text, None)
    ids = whole.input_ids
    return [
        Tokenized(ids[i : i + max_len], ids[i : i + max_len], len(ids[i : i + max_len]))
        for i in range(0, len(ids), max_len)
    ]
