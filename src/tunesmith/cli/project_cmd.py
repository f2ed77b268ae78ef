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
  method: sft                   # sft | cpt | dpo | reward | ppo | rloo | grpo
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

1. `data/examples.jsonl` holds 48 starter examples (support tickets routed to the queues billing, technical
   and account), so every step below runs as written. Replace them with your own examples, one JSON object
   per line in the same format (other formats: `tunesmith data check --help`; a CSV export with its own
   column names and your system prompt becomes this format with `tunesmith data convert --help`).
2. Check them: `tunesmith data check data/examples.jsonl` (errors with line numbers, quality warnings).
3. Split off a hold-out set: `tunesmith data split data/examples.jsonl --holdout 0.2 --out data/`
   (writes `data/train.jsonl` and `data/holdout.jsonl`; run again, it refuses to replace them unless `--force`).
4. Estimate cost and time: `tunesmith estimate --model smollm2-135m-instruct --method lora --data data/train.jsonl --epochs 2`
   (2 epochs, as `tunesmith.yaml` trains).
5. Train: `tunesmith train tunesmith.yaml`.
6. Evaluate against the prompted base model: `tunesmith eval --config tunesmith.yaml --adapter runs/<id> --data data/holdout.jsonl --out report/`
   (`runs/<id>` is the run folder that `tunesmith train` printed; `tunesmith runs list` shows them all;
   `--config` applies the `eval:` section of `tunesmith.yaml`: its baselines and release gate `require`).
7. Serve it behind an OpenAI-compatible API: `tunesmith export runs/<id> --merged merged/` (one model folder),
   then `tunesmith serve --base-model merged/` and call the model `merged` at `http://127.0.0.1:8000/v1` with
   the `openai` SDK (more: `tunesmith serve --help`).
"""

# The starter data init writes: 48 support tickets routed to three queues, enough for every step of the
# guide to run as written (data check needs 10 examples; a 20% hold-out keeps ~10). Users replace them.
STARTER_TICKETS = {
    "billing": [
        "My invoice shows the wrong amount.",
        "I was charged twice for the same month.",
        "Can I get a refund for the unused seats?",
        "Please send me a VAT invoice for March.",
        "The card on file expired, how do I update it?",
        "Why did my bill go up after the upgrade?",
        "I cancelled last week but was still charged.",
        "Do you offer a discount for annual payment?",
        "The receipt is missing our company address.",
        "Switch our plan from monthly to yearly billing, please.",
        "A payment failed and now the account is locked for billing.",
        "Who do I talk to about a disputed charge of 49 euros?",
        "Our purchase order number must appear on every invoice.",
        "Is sales tax included in the listed price?",
        "We were billed for 12 users but only have 9.",
        "Can I pay by bank transfer instead of card?",
    ],
    "technical": [
        "The app crashes when I log in.",
        "File uploads stop at 99 percent.",
        "The dashboard is blank in Firefox.",
        "Export to CSV gives an empty file.",
        "The API returns error 500 on every request since this morning.",
        "Sync between the phone and the desktop app is not working.",
        "Search does not find documents I created today.",
        "The page takes a minute to load on mobile.",
        "Webhooks are not firing for new orders.",
        "I get a certificate warning on your download site.",
        "Notifications arrive twice on Android.",
        "The import wizard rejects my spreadsheet without a reason.",
        "Dark mode makes the chart labels unreadable.",
        "The desktop client freezes when I open large projects.",
        "Two-factor codes from the app are always rejected as invalid.",
        "The printer integration prints blank pages.",
    ],
    "account": [
        "How do I change the email address on my account?",
        "Please delete my account and all my data.",
        "I forgot my password and the reset mail never comes.",
        "Add a new admin to our workspace.",
        "How can I transfer ownership of the team to a colleague?",
        "I want to rename our organisation.",
        "Remove a former employee from our team.",
        "Can I merge my two accounts into one?",
        "Where do I change my display name?",
        "Please unlock my account after too many login attempts.",
        "How do I turn on single sign-on for my team?",
        "I need to change the phone number used for verification.",
        "Set my language to German, please.",
        "Can a guest user see our private projects?",
        "How do I download a copy of my personal data?",
        "Invite three new members to the marketing workspace.",
    ],
}


def starter_examples() -> list[dict]:
    """The starter tickets as chat examples (user ticket -> assistant queue name), the queues interleaved."""
    labels = list(STARTER_TICKETS)
    n = len(STARTER_TICKETS[labels[0]])
    return [
        {
            "messages": [
                {"role": "user", "content": STARTER_TICKETS[lab][i]},
                {"role": "assistant", "content": lab},
            ]
        }
        for i in range(n)
        for lab in labels
    ]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")


def init(directory: Path = typer.Argument(..., help="Folder to create the project in.")) -> None:
    """Write a starter project: tunesmith.yaml, data/examples.jsonl with 48 starter examples, and a short guide.
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
    sample = directory / "data" / "examples.jsonl"
    if not sample.exists():  # the user's own data is never replaced
        sample.write_text("".join(json.dumps(r) + "\n" for r in starter_examples()), encoding="utf-8")
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
