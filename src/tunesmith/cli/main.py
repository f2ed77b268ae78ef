"""The `tunesmith` command. Each command group lives in its own module with a ``register(app)``
function; heavy libraries (torch, transformers) are imported inside the commands, so ``--help`` is fast."""

from __future__ import annotations

import importlib
import os
import sys

import typer
from typer.core import TyperGroup

from tunesmith.errors import TunesmithError


class _Root(TyperGroup):
    """The CLI's one error handler. Every command and sub-command runs inside this ``invoke``, so a
    ``TunesmithError`` from anywhere below (a command, an option callback, the library) is printed as
    message + hint and ends with its exit code, never a traceback; Ctrl-C outside training exits 130.
    Commands never catch TunesmithError themselves. ``sys.exit`` rather than click's ``Exit`` so the code
    is the same however the app runs (the console script, ``main()``, typer's CliRunner in tests)."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except TunesmithError as exc:
            from tunesmith.cli.render import print_error

            print_error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)


app = typer.Typer(
    name="tunesmith",
    cls=_Root,
    help="Self-hosted fine-tuning workbench: check data, train (LoRA/QLoRA/DoRA/full, DPO, reward, RLHF), "
    "evaluate against prompted baselines, RAG, estimate cost, and serve an OpenAI-compatible API.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Order is the order of `tunesmith --help`.
COMMAND_MODULES = [
    "tunesmith.cli.project_cmd",  # init, config
    "tunesmith.cli.models_cmd",  # models
    "tunesmith.cli.data_cmd",  # data
    "tunesmith.cli.train_cmd",  # train, export, runs, chat
    "tunesmith.cli.eval_cmd",  # eval, compare, demo
    "tunesmith.cli.grade_cmd",  # grade (graders, judge calibration)
    "tunesmith.cli.pref_cmd",  # score
    "tunesmith.cli.rag_cmd",  # rag
    "tunesmith.cli.advisor_cmd",  # estimate, plan
    "tunesmith.cli.serve_cmd",  # serve, logs
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show the libraries' own warnings, log lines and progress bars (by default they go to "
        "$TUNESMITH_HOME/logs/libraries.log).",
    ),
) -> None:
    if version:
        from tunesmith import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


TRAINING_COMMANDS = ("train", "demo")  # the commands that train in this process


def entry() -> None:
    """The process entry point (console script and ``python -m tunesmith``): a training command first
    re-executes itself on jemalloc where it is installed (tunesmith/allocator.py), then runs ``main``.
    ``main`` itself never replaces the process, so it can be called in-process (tests)."""
    args = sys.argv[1:]
    if args and args[0] in TRAINING_COMMANDS:
        from tunesmith.allocator import reexec_with_jemalloc

        reexec_with_jemalloc(args)
    main()


def main() -> None:
    """Console entry point. Usage errors are click's (exit 2, with the usage line); a TunesmithError is
    rendered by ``_Root.invoke`` (above) as message + hint with its exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tunesmith.cli.noise import quiet_libraries

    # before any command imports a library; the option itself is declared on the root callback
    quiet_libraries(verbose="--verbose" in sys.argv[1:])
    from tunesmith.cli.progress_view import ProgressLines
    from tunesmith.cli.render import console, err_console
    from tunesmith.progress import use_sink

    # long steps (conversion, generation, indexing, export) report count and ETA: on the terminal's own
    # console (where rich keeps them apart from a command's spinner or bar), and on stderr when stdout is
    # not a terminal, so that a command's output (--json | jq, > file) stays clean
    with use_sink(ProgressLines(console if console.is_terminal else err_console)):
        app()  # standalone mode: click prints usage errors and exits with their codes


if __name__ == "__main__":
    entry()
