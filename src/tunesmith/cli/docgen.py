"""Generate ``docs/cli.md`` from the ``--help`` of every command: ``python -m tunesmith.cli.docgen``.

The reference is the CLI's own help text, so it cannot drift from the code: a test
(tests/unit/cli/test_cli_docs.py) renders it again and fails when the checked-in file differs. Rendering is
pinned (100 columns, no colour) so the file is the same on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

WIDTH = 100
DOCS_FILE = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
HEADER = """# Command-line reference

Generated from `tunesmith ... --help` by `python -m tunesmith.cli.docgen`; do not edit by hand (a test fails
when this file is not current: re-run the command after changing a command, option or help text).
"""


def render_cli_docs() -> str:
    """The whole reference as Markdown: one section per command and sub-command, in ``--help`` order."""
    from tunesmith.cli.main import app

    root = typer.main.get_command(app)
    sections = [HEADER]
    for path in _command_paths(root, []):
        title = " ".join(["tunesmith", *path])
        sections.append(f"## {title}\n\n```text\n{_help(app, path)}\n```\n")
    return "\n".join(sections)


def _command_paths(cmd: Any, path: list[str]) -> list[list[str]]:
    # typer vendors its own click, so groups are recognised by what they do, not by click's class
    paths = [path]
    if hasattr(cmd, "list_commands"):
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                paths += _command_paths(sub, [*path, name])
    return paths


def _help(app: typer.Typer, path: list[str]) -> str:
    env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb", "TUNESMITH_RUNS_DIR": None}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="tunesmith")
    if result.exit_code != 0:
        raise RuntimeError(f"tunesmith {' '.join(path)} --help failed: {result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def main() -> None:
    """Write ``docs/cli.md`` (or the path given as the only argument)."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_FILE
    out.write_text(render_cli_docs(), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
