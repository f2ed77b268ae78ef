"""`tunesmith init` and the guide it writes: following the guide twice destroys nothing (issue 19 item 7:
its `data split` step used to overwrite its own input and then replace the first hold-out)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()
LABELS = ["billing", "technical", "account"]
WORDS = [
    "invoice",
    "refund",
    "login",
    "password",
    "crash",
    "upload",
    "export",
    "seat",
    "plan",
    "card",
    "team",
]


def _examples(n: int = 45) -> list[dict]:
    rows = []
    for i in range(n):
        words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5, 7))
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Ticket {i}: {words} problem number {i * 7919 % 1000}"},
                    {"role": "assistant", "content": LABELS[i % 3]},
                ]
            }
        )
    return rows


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def _guide_data_commands(guide: str) -> list[list[str]]:
    found = [shlex.split(c)[1:] for c in re.findall(r"`(tunesmith data [^`]+)`", guide)]
    cmds = [c for c in found if "--help" not in c]
    # data check would load the default model's tokenizer; the token stats are not what this test is about
    return [c + ["--model", "none"] if c[:2] == ["data", "check"] else c for c in cmds]


def test_the_guides_data_commands_run_twice_overwrite_nothing(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    guide = (project / "GUIDE.md").read_text()
    examples = project / "data" / "examples.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in _examples()))
    commands = _guide_data_commands(guide)
    assert [c[:2] for c in commands] == [["data", "check"], ["data", "split"]]
    monkeypatch.chdir(project)

    for args in commands:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    first = _snapshot(project)
    train = first["data/train.jsonl"][0].decode().splitlines()
    hold = first["data/holdout.jsonl"][0].decode().splitlines()
    assert sorted(train + hold) == sorted(examples.read_text().splitlines()) and hold  # nothing lost

    for args in commands:  # the second time: refused where it would replace, never a changed file
        res = runner.invoke(app, args)
        if args[:2] == ["data", "split"]:
            assert res.exit_code == 2 and "already exist" in res.output and "--force" in res.output
        else:
            assert res.exit_code == 0, res.output
    assert _snapshot(project) == first  # same bytes, and not even rewritten (same mtimes)


def test_split_refuses_to_write_over_its_own_input_even_with_force(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _examples()))
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        res = runner.invoke(app, ["data", "split", str(src), "--holdout", "0.2", "--out", str(data), *extra])
        assert res.exit_code == 2 and "which is the input file" in res.output, res.output
        assert src.read_bytes() == before and not (data / "holdout.jsonl").exists()


def test_split_force_replaces_an_earlier_split(tmp_path):
    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _examples()))
    out = tmp_path / "split"
    base = ["data", "split", str(src), "--out", str(out)]
    assert runner.invoke(app, [*base, "--seed", "1"]).exit_code == 0
    first = (out / "holdout.jsonl").read_bytes()
    assert runner.invoke(app, [*base, "--seed", "2"]).exit_code == 2
    assert (out / "holdout.jsonl").read_bytes() == first
    assert runner.invoke(app, [*base, "--seed", "2", "--force"]).exit_code == 0
    assert (out / "holdout.jsonl").read_bytes() != first
    assert not list(out.glob(".*.tmp"))  # the temporary files were renamed into place


def test_check_refuses_a_json_report_over_its_own_input(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _examples()))
    before = src.read_bytes()
    res = runner.invoke(app, ["data", "check", str(src), "--model", "none", "--json", str(src)])
    assert res.exit_code == 2 and "would destroy it" in res.output and src.read_bytes() == before


def test_init_twice_changes_nothing(tmp_path):
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    (project / "GUIDE.md").write_text("my notes")
    first = _snapshot(project)
    res = runner.invoke(app, ["init", str(project)])
    assert res.exit_code == 1 and "nothing was changed" in res.output
    (project / "tunesmith.yaml").unlink()  # even without the config, the edited guide is kept
    res = runner.invoke(app, ["init", str(project)])
    assert res.exit_code == 1 and "GUIDE.md already exists" in res.output
    assert (project / "GUIDE.md").read_text() == "my notes" and not (project / "tunesmith.yaml").exists()
    assert first["data/examples.jsonl"] == _snapshot(project)["data/examples.jsonl"]


def test_guide_estimate_prices_the_epochs_the_starter_config_trains_and_points_csv_exports_to_convert():
    """The estimate step used to price 1 epoch (estimate's default) while the starter config trains 2."""
    import yaml

    from tunesmith.cli.project_cmd import GUIDE, STARTER_CONFIG

    epochs = yaml.safe_load(STARTER_CONFIG)["train"]["epochs"]
    (estimate,) = [shlex.split(c)[1:] for c in re.findall(r"`(tunesmith estimate [^`]+)`", GUIDE)]
    assert float(estimate[estimate.index("--epochs") + 1]) == epochs
    assert "`tunesmith data convert --help`" in GUIDE
    res = runner.invoke(app, ["data", "convert", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--text-field" in res.output and "--system-prompt" in res.output


def test_the_guides_eval_step_applies_the_release_gate_written_in_tunesmith_yaml(tmp_path, monkeypatch):
    """The guide's eval command used to leave out --config, so the `eval.require` gate that tunesmith.yaml
    invites ("e.g. finetuned.accuracy>=0.9") was silently not applied."""
    import tunesmith.eval.run as eval_run
    from tunesmith.errors import TunesmithError

    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "p"]).exit_code == 0
    monkeypatch.chdir(tmp_path / "p")
    cfg = Path("tunesmith.yaml").read_text()
    cfg = cfg.replace("name: smollm2-135m-instruct", "name: tiny").replace(
        "require: []", 'require: ["finetuned.accuracy>=0.9"]'
    )
    Path("tunesmith.yaml").write_text(cfg)
    Path("data/holdout.jsonl").write_text("\n".join(json.dumps(r) for r in _examples(12)) + "\n")
    (Path("runs/r1/adapter")).mkdir(parents=True)
    Path("runs/r1/adapter/adapter_config.json").write_text("{}")
    seen: list = []

    def capture(spec, **k):  # noqa: ANN001, ANN003, ANN202
        seen.append(spec)
        raise TunesmithError("EVAL WORK REACHED")

    monkeypatch.setattr(eval_run, "run", capture)
    guide = Path("GUIDE.md").read_text()
    (step,) = [shlex.split(c)[1:] for c in re.findall(r"`(tunesmith eval [^`]+)`", guide)]
    res = runner.invoke(app, [a.replace("runs/<id>", "runs/r1") for a in step])
    assert "EVAL WORK REACHED" in res.output, res.output
    assert seen[0].settings.require == ["finetuned.accuracy>=0.9"] and seen[0].model == "tiny"


def test_a_second_split_says_which_files_exist_in_plain_words(tmp_path):
    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _examples()))
    out = tmp_path / "split"
    base = ["data", "split", str(src), "--out", str(out)]
    assert runner.invoke(app, base).exit_code == 0
    res = runner.invoke(app, base, env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "holdout.jsonl already exist (an earlier split?)" in res.output, res.output
    (out / "train.jsonl").unlink()
    res = runner.invoke(app, base, env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "holdout.jsonl already exists (an earlier split?)" in res.output, res.output
