"""Helpers shared by the data workbench tests (imported as a plain module: tests/unit/data is on sys.path)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from tunesmith.cli.main import app

runner = CliRunner()

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "seven",
    "violin",
    "orbit",
    "maple",
    "copper",
    "lantern",
    "harbor",
    "quiet",
    "meadow",
    "tiger",
    "canvas",
    "pepper",
    "marble",
    "falcon",
    "velvet",
    "summit",
    "garden",
    "rocket",
    "willow",
    "ember",
    "puzzle",
    "cedar",
    "thunder",
    "island",
    "sketch",
    "ribbon",
    "saddle",
    "comet",
    "fabric",
    "glacier",
    "hammer",
    "ivory",
    "jungle",
    "kettle",
    "lemon",
    "mirror",
    "nickel",
    "oyster",
    "pillow",
    "quartz",
    "radar",
]


def sentence(i: int, n: int = 12) -> str:
    """A distinct, deterministic sentence (word choice driven by i), so unrelated examples share little."""
    return " ".join(WORDS[(i * 7 + j * (i % 11 + 3)) % len(WORDS)] + str((i + j) % 5) for j in range(n))


def chat(q: str, a: str, system: str | None = None) -> dict:
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return {"messages": msgs}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check(path: Path, *extra: str, model: str = "none") -> tuple[int, dict, str]:
    """Run `tunesmith data check` through the CLI; return (exit code, --json report, terminal output)."""
    out = Path(tempfile.mkdtemp(prefix="tunesmith-check-")) / "report.json"  # never beside the input
    res = runner.invoke(app, ["data", "check", str(path), "--model", model, "--json", str(out), *extra])
    report = json.loads(out.read_text()) if out.exists() else {}
    return res.exit_code, report, res.output


def codes(report: dict, kind: str = "warnings") -> dict[str, list]:
    return {w["code"]: (w["lines"] if kind == "warnings" else w["line"]) for w in report[kind]}
