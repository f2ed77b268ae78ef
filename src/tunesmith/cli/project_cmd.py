"""`tunesmith init` and `tunesmith config schema|validate|show`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tunesmith.cli.render import console

config_app = typer.Typer(help="Inspect and validate project configs.", no_args_is_help=True)

STARTER_CONFIG = """\
# tunesmith project config. Every key: `tunesmith config schema`. Override any key on the command line,
# e.g. `tunesmith train tunesmith.yaml train.lr=1e-4`.
model:
  name: smollm2-135m-instruct   # the embedded default; or a local model folder
data:
  train: data/train.jsonl       # chat, prompt/completion, classification, extraction, preference or text
  holdout: data/holdout.jsonl   # optional: split off with `tunesmith data split`
  max_seq_len: 1024
train:
  method: sft                   # sft | cpt | dpo | reward | ppo
  finetune: lora                # lora | qlora | dora | full
  epochs: 2
lora:
  r: 16
eval:
  baselines: [zero-shot, few-shot]
  require: []                   # e.g. ["finetuned.accuracy>=0.9"]
"""

GUIDE = """\
# Your tunesmith project

1. Put all your examples in `data/examples.jsonl` (one JSON object per line, like `data/sample.jsonl`;
   see `tunesmith data check --help`).
2. Check them: `tunesmith data check data/examples.jsonl` (errors with line numbers, quality warnings).
3. Split off a hold-out set: `tunesmith data split data/examples.jsonl --holdout 0.2 --out data/`
   (writes `data/train.jsonl` and `data/holdout.jsonl`; run again, it refuses to replace them unless `--force`).
4. Estimate cost and time: `tunesmith estimate --model smollm2-135m-instruct --method lora --data data/train.jsonl`.
5. Train: `tunesmith train tunesmith.yaml`.
6. Evaluate against the prompted base model: `tunesmith eval --model smollm2-135m-instruct --adapter runs/<id> --data data/holdout.jsonl --out report/`.
"""

SAMPLE = [
    {
        "messages": [
            {"role": "user", "content": "My invoice shows the wrong amount."},
            {"role": "assistant", "content": "billing"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "The app crashes when I log in."},
            {"role": "assistant", "content": "technical"},
        ]
    },
]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")


def init(directory: Path = typer.Argument(..., help="Folder to create the project in.")) -> None:
    """Write a starter project: tunesmith.yaml, a data folder with a sample, and a short guide.
    Nothing that exists is overwritten: an existing config or guide stops it before it writes anything."""
    from tunesmith.errors import TunesmithError

    cfg = directory / "tunesmith.yaml"
    for existing in (cfg, directory / "GUIDE.md"):
        if existing.exists():
            raise TunesmithError(
                f"{existing} already exists; nothing was changed.",
                "Pick another folder or edit the existing files.",
            )
    (directory / "data").mkdir(parents=True, exist_ok=True)
    cfg.write_text(STARTER_CONFIG, encoding="utf-8")
    (directory / "GUIDE.md").write_text(GUIDE, encoding="utf-8")
    sample = directory / "data" / "sample.jsonl"
    if not sample.exists():
        sample.write_text("".join(json.dumps(r) + "\n" for r in SAMPLE), encoding="utf-8")
    console.print(f"Created [bold]{cfg}[/], {directory / 'GUIDE.md'} and {sample}.")


@config_app.command("schema")
def schema() -> None:
    """Print the JSON schema of the project config (every key, type, default and description)."""
    from tunesmith.config import ProjectConfig

    typer.echo(json.dumps(ProjectConfig.model_json_schema(), indent=2))


@config_app.command("validate")
def validate(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=1e-4."),
) -> None:
    """Validate a config; exit 1 with the offending keys when it is wrong."""
    from tunesmith.config import load_config

    load_config(config, overrides or [])
    console.print(f"[green]OK[/] {config} is valid.")


@config_app.command("show")
def show(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=1e-4."),
) -> None:
    """Print the resolved config with every default filled in."""
    from tunesmith.config import dump_config, load_config

    typer.echo(dump_config(load_config(config, overrides or [])))
