"""`tunesmith data check|split|show|convert`: the data workbench. Rendering only; the work is in
``tunesmith.data``. Heavy imports (transformers) happen inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from tunesmith.cli.render import console
from tunesmith.errors import TunesmithError, UsageError

data_app = typer.Typer(help="Check, split, show and convert training data.", no_args_is_help=True)

TASKS = ["chat", "completion", "classification", "extraction", "preference", "text"]


def _task_cb(value: str | None) -> str | None:
    if value is not None and value not in TASKS:
        # a UsageError rather than click's BadParameter: the CLI's one handler (cli/main.py) prints it
        # as message + hint with exit code 2
        raise UsageError(f"--task {value!r} is not a data format.", f"Use one of {', '.join(TASKS)}.")
    return value


TASK_OPT = typer.Option(
    None,
    "--task",
    callback=_task_cb,
    help="Force the data format: " + ", ".join(TASKS) + " (detected when omitted).",
)
TEXT_OPT = typer.Option("text", "--text-field", help="Input text column (classification/extraction tables).")
LABEL_OPT = typer.Option("label", "--label-field", help="Label column (classification tables).")
FIELDS_OPT = typer.Option("fields", "--fields-field", help="JSON-object column (extraction tables).")
MODEL_HELP = "Model whose tokenizer and chat template measure the examples (alias or local folder)."
SHOWN_LINES = 12


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")



def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist.", "Check the path.")
    return path


def _columns(text_field: str, label_field: str, fields_field: str):
    from tunesmith.data.formats import Columns

    return Columns(text_field, label_field, fields_field)


def _tokenizer(model: str) -> Any:
    from tunesmith.models.load import load_tokenizer

    try:
        return load_tokenizer(model)
    except TunesmithError as exc:
        raise UsageError(f"--model {model}: {exc.message}", exc.hint) from None


# --------------------------------------------------------------------------- check


@data_app.command("check")
def check(
    file: Path = typer.Argument(
        ..., help="Training data: JSONL, CSV/TSV, TXT/MD, or a folder of text files."
    ),
    holdout: Path | None = typer.Option(
        None, "--holdout", help="Hold-out file: checked too, and for leaks from training."
    ),
    task: str | None = TASK_OPT,
    model: str = typer.Option(
        "smollm2-135m-instruct", "--model", help=MODEL_HELP + " 'none' skips token stats."
    ),
    max_seq_len: int = typer.Option(
        1024, "--max-seq-len", min=16, help="Longest example in tokens; longer ones are reported."
    ),
    json_out: str | None = typer.Option(
        None, "--json", help="Write the report as JSON to this file ('-' for stdout only)."
    ),
    system_prompt: str | None = typer.Option(
        None, "--system-prompt", help="System prompt added to table rows (default: generated)."
    ),
    text_field: str = TEXT_OPT,
    label_field: str = LABEL_OPT,
    fields_field: str = FIELDS_OPT,
) -> None:
    """Errors with line numbers, quality warnings and token stats. Exit 0: no errors; 1: errors; 2: usage."""
    report = _check(
        file,
        holdout,
        task,
        model,
        max_seq_len,
        system_prompt,
        _columns(text_field, label_field, fields_field),
    )
    payload = report.as_dict()
    if json_out not in (None, "-"):
        _refuse_input_as_output(Path(json_out), [file, holdout])
    if json_out == "-":
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        if json_out:
            _write_json(Path(json_out), payload)
        _render_report(file, report)
    if not report.ok:
        sys.exit(1)  # SystemExit, not typer.Exit: the exit code survives standalone_mode=False in main()


def _check(file, holdout, task, model, max_seq_len, system_prompt, columns):
    from tunesmith.data.check import validate_data

    _existing(file, "File")
    if holdout is not None:
        _existing(holdout, "Hold-out file")
    tokenizer = None if model.lower() == "none" else _tokenizer(model)
    return validate_data(
        file,
        task=task,
        holdout=holdout,
        tokenizer=tokenizer,
        max_seq_len=max_seq_len,
        columns=columns,
        system_prompt=system_prompt,
        model_name=model,
    )


def _refuse_input_as_output(out: Path, inputs: list[Path | None]) -> None:
    for p in inputs:
        if p is not None and out.exists() and p.exists() and out.resolve() == p.resolve():
            raise UsageError(
                f"--json {out} is the data file being checked; writing the report would destroy it.",
                "Pass another file name, e.g. report.json.",
            )


def _write_json(path: Path, payload: dict) -> None:
    if path.is_dir():
        raise UsageError(f"--json {path} is a folder.", "Pass a file name, e.g. report.json.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _render_report(file: Path, report: Any) -> None:
    from rich.table import Table

    verdict = "[bold green]OK[/]" if report.ok else f"[bold red]{len(report.errors)} error(s)[/]"
    notes = sum(1 for w in report.warnings if w.level == "info")
    console.print(
        f"[bold]{file}[/]: {report.format}, {report.n_examples:,} usable example(s): {verdict}, {len(report.warnings) - notes} warning(s)"
        + (f", {notes} note(s)" if notes else ""),
        highlight=False,
    )
    if report.errors:
        table = Table(
            "line", "code", "problem", "fix", title="Errors", title_justify="left", show_lines=False
        )
        for e in report.errors[:50]:
            table.add_row(str(e.line) if e.line else "-", e.code, e.message, e.hint)
        console.print(table)
        if len(report.errors) > 50:
            console.print(f"... and {len(report.errors) - 50} more errors (all of them with --json).")
    for w in report.warnings:
        lines = ", ".join(map(str, w.lines[:SHOWN_LINES])) + (
            f" ... ({len(w.lines)} lines)" if len(w.lines) > SHOWN_LINES else ""
        )
        kind = "[cyan]note[/]" if w.level == "info" else "[yellow]warning[/]"
        console.print(f"{kind} [bold]{w.code}[/]: {w.message}", highlight=False, soft_wrap=True)
        if lines:
            console.print(f"  lines: {lines}", highlight=False)
    if report.stats:
        _render_stats(report.stats)


def _render_stats(stats: dict) -> None:
    from rich.table import Table

    table = Table("stat", "value", title="Stats", title_justify="left")
    for key, value in stats.items():
        if key == "shared":  # content shared by the examples, left out of the quality checks
            from tunesmith.data.shared import describe

            value = "\n".join(describe(e) for e in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(key, str(value))
    console.print(table)


# --------------------------------------------------------------------------- split


@data_app.command("split")
def split(
    file: Path = typer.Argument(..., help="Data file to split."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction for the hold-out set (0-1)."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed: the same seed gives the same split."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for train.* and holdout.* (never the input file's own name)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an earlier split in --out (the input itself is never overwritten)."
    ),
    task: str | None = TASK_OPT,
    text_field: str = TEXT_OPT,
    label_field: str = LABEL_OPT,
    fields_field: str = FIELDS_OPT,
) -> None:
    """Seeded hold-out split: stratified by label; duplicates and near-duplicates stay on one side."""
    from tunesmith.data.split import split_file

    _existing(file, "File")
    res = split_file(
        file,
        out,
        holdout,
        seed,
        task,
        _columns(text_field, label_field, fields_field),
        force=force,
    )
    console.print(
        f"[green]Wrote[/] {res.train_path} ({res.n_train:,} examples) and {res.holdout_path} ({res.n_holdout:,}).",
        highlight=False,
    )
    if res.stratified:
        console.print(
            "Stratified by label; hold-out per label: "
            + ", ".join(f"{k}={v}" for k, v in sorted(res.holdout_by_label.items())),
            highlight=False,
        )
    if res.groups_kept_together:
        console.print(
            f"{res.groups_kept_together} group(s) of duplicate or near-duplicate examples were kept on one side."
        )


# --------------------------------------------------------------------------- show


@data_app.command("show")
def show(
    file: Path = typer.Argument(..., help="Data file."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", help=MODEL_HELP),
    n: int = typer.Option(3, "-n", "--n", min=1, help="Examples to show."),
    max_seq_len: int | None = typer.Option(None, "--max-seq-len", min=16, help="Truncate as training would."),
    task: str | None = TASK_OPT,
    markers: bool | None = typer.Option(
        None, "--markers/--no-markers", help="Wrap trained text in [[ ]] (default: when not a terminal)."
    ),
    text_field: str = TEXT_OPT,
    label_field: str = LABEL_OPT,
    fields_field: str = FIELDS_OPT,
) -> None:
    """The chat-templated text of a few examples, trained tokens marked apart from masked ones, and findings."""
    from tunesmith.data.show import show_examples

    _existing(file, "File")
    tokenizer = _tokenizer(model)
    res = show_examples(
        file,
        tokenizer,
        n,
        task=task,
        columns=_columns(text_field, label_field, fields_field),
        max_seq_len=max_seq_len,
    )
    use_markers = markers if markers is not None else not console.is_terminal
    _render_examples(res, use_markers)


def _render_examples(res: Any, markers: bool) -> None:
    from rich.panel import Panel
    from rich.text import Text

    console.print(
        "[bold green]trained[/] text carries loss; [dim]dim[/] text is context only"
        + ("; trained text is also wrapped in [[ ]]" if markers else "")
        + ".",
        highlight=False,
    )
    for ex in res.examples:
        text = Text()
        pos = 0
        for s, e in ex.trained_spans:
            text.append(ex.text[pos:s], style="dim")
            text.append(
                ("[[" if markers else "") + ex.text[s:e] + ("]]" if markers else ""), style="bold green"
            )
            pos = e
        text.append(ex.text[pos:], style="dim")
        console.print(
            Panel(
                text,
                title=f"line {ex.line}: {ex.n_tokens} tokens, {ex.n_trained} trained",
                title_align="left",
            )
        )
    if not res.findings:
        console.print(
            f"[green]No findings[/] in the first {res.scanned} example(s): end-of-turn trained, every example trains something, system prompts kept."
        )
    for f in res.findings:
        lines = ", ".join(map(str, f.lines[:SHOWN_LINES])) + (" ..." if len(f.lines) > SHOWN_LINES else "")
        console.print(
            f"[yellow]finding[/] [bold]{f.code}[/]: {f.message} (lines {lines})",
            highlight=False,
            soft_wrap=True,
        )


# --------------------------------------------------------------------------- convert


@data_app.command("convert")
def convert(
    file: Path = typer.Argument(
        ..., help="Classification/extraction table (CSV/JSONL) or prompt/completion JSONL."
    ),
    out: Path = typer.Option(..., "--out", help="Chat JSONL to write (a new file unless --force)."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing --out file (the input itself is never overwritten)."
    ),
    task: str | None = TASK_OPT,
    system_prompt: str | None = typer.Option(
        None,
        "--system-prompt",
        help="Use this system prompt instead of the generated one (e.g. the train file's, for the hold-out).",
    ),
    with_context: str | None = typer.Option(
        None,
        "--with-context",
        help="RAG index folder or postgresql:// URL: add retrieved passages and distractors to each prompt (RAFT).",
    ),
    k: int = typer.Option(3, "--k", min=0, help="Retrieved passages per row (--with-context)."),
    distractors: int = typer.Option(
        2, "--distractors", min=0, help="Random unrelated passages per row (--with-context)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for distractor choice and order (--with-context)."),
    text_field: str = TEXT_OPT,
    label_field: str = LABEL_OPT,
    fields_field: str = FIELDS_OPT,
) -> None:
    """Turn tables into chat JSONL with a generated system prompt (the label set or the JSON keys)."""
    from tunesmith.data.convert import convert_file

    _existing(file, "File")
    add_context = None
    if with_context is not None:
        from tunesmith.rag.raft import context_adder

        add_context = context_adder(with_context, k=k, distractors=distractors, seed=seed)
    res = convert_file(
        file,
        out,
        task=task,
        columns=_columns(text_field, label_field, fields_field),
        system_prompt=system_prompt,
        add_context=add_context,
        force=force,
    )
    console.print(
        f"[green]Wrote[/] {res.n_rows:,} chat rows from {res.source_format} data to {res.out}"
        + (" with retrieved context" if res.with_context else "")
        + ".",
        highlight=False,
    )
    if res.system_prompt:
        console.print(f"System prompt: {res.system_prompt}", highlight=False)
