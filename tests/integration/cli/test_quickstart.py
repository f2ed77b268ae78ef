"""Issue 17: the README's quick start and the guide `tunesmith init` writes, followed literally in a temp folder,
twice: every command exits 0 and no file is overwritten.

Deviations from "literally", each for time only: `tunesmith train` gets `model.name=tiny train.max_steps=2`
(the real LoRA run on SmolLM2 takes minutes on CPU); the guide's `tunesmith eval` step is not run (its prompted
baselines take minutes; eval is tested in tests/integration/eval/), nor `tunesmith serve` (a server that runs
until stopped; tests/integration/serve/); `runs/<id>` in the guide is the run its train step just made.
`make install` and `. .venv/bin/activate` are the environment this test already runs in."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()
FAST_TRAIN = ["model.name=tiny", "train.max_steps=2"]


def readme_quick_start() -> list[str]:
    """The shell lines of the README's first bash block under '## Quick start'."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def guide_commands(guide: str) -> list[list[str]]:
    """The `tunesmith ...` commands of GUIDE.md, in order (without `--help`, bare names and the `runs list` pointer)."""
    cmds = [shlex.split(c)[1:] for c in re.findall(r"`(tunesmith [^`]+)`", guide)]
    # a bare command name in a sentence (`tunesmith train` printed ...) is a reference, not a step
    return [c for c in cmds if len(c) > 1 and "--help" not in c and c[:2] != ["runs", "list"]]


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def _run(args: list[str]) -> None:
    if args[0] == "train":
        args = [*args, *FAST_TRAIN]
    split_before = Path("data/train.jsonl").exists()
    export_before = args[0] == "export" and Path(args[args.index("--merged") + 1]).exists()
    res = runner.invoke(app, args)
    if args[:2] == ["data", "split"] and split_before and res.exit_code == 2:
        assert "--force" in res.output, res.output  # a second split refuses to replace the first, says how
        return
    if args[0] == "export" and export_before and res.exit_code == 1:
        assert "already exists and is not empty" in res.output, res.output  # the first export is kept
        return
    assert res.exit_code == 0, (args, res.output)


def _assert_nothing_overwritten(before: dict, after: dict) -> None:
    changed = [p for p, v in before.items() if p in after and after[p] != v and not p.endswith(".sqlite")]
    assert not changed, f"files rewritten: {changed}"
    assert set(before) <= set(after), f"files lost: {set(before) - set(after)}"


def test_readme_quick_start_then_guide_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = readme_quick_start()
    assert any(line.startswith("tunesmith init") for line in lines)
    ran: list[str] = []
    for round_ in range(2):
        start = _snapshot(tmp_path)
        monkeypatch.chdir(tmp_path)
        for line in lines:
            if line.startswith(("make install", ". .venv")):
                continue
            if line.startswith("cd "):
                monkeypatch.chdir(Path.cwd() / line[3:].strip())
                continue
            args = shlex.split(line)
            assert args[0] == "tunesmith", f"the quick start has a line this test cannot follow: {line}"
            if args[1] == "init" and round_ == 1:  # init refuses an existing project and changes nothing
                res = runner.invoke(app, args[1:])
                assert res.exit_code == 1 and "nothing was changed" in res.output, res.output
                continue
            _run(args[1:])
            ran.append(args[1])
        project = Path.cwd()
        guide = (project / "GUIDE.md").read_text(encoding="utf-8")
        for args in guide_commands(guide):
            if args[0] in ("eval", "serve"):
                continue  # see the module docstring
            if "runs/<id>" in args:
                newest = max(p for p in (project / "runs").iterdir() if p.is_dir())
                args = [str(newest) if a == "runs/<id>" else a for a in args]
            _run(args)
            ran.append(args[0])
        _assert_nothing_overwritten(start, _snapshot(tmp_path))
        runs = [p for p in (project / "runs").iterdir() if p.is_dir()]
        assert len(runs) == 2 * (round_ + 1)  # the README's and the guide's train, each a new run folder
    assert {"init", "data", "train", "estimate", "export"} <= set(ran)
