"""Issue 17: `tunesmith train` checks what it can before long work starts: the data is valid, the output folder
can be written, the memory plan fits (train/plan.py's estimate). Each refusal is one clear message, and no
model weights are loaded first (a guard fails the test if they are)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit


@pytest.fixture
def no_model_load(monkeypatch):  # noqa: ANN201
    import tunesmith.models.load as load

    monkeypatch.setattr(load, "load_causal_lm", lambda *a, **k: pytest.fail("model weights were loaded"))


def _project(tmp_path, **train):  # noqa: ANN001, ANN003, ANN202
    rows = [
        {"messages": [{"role": "user", "content": f"Is {w} a fruit?"}, {"role": "assistant", "content": a}]}
        for w, a in [("apple", "yes"), ("car", "no"), ("pear", "yes"), ("chair", "no")] * 4
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    cfg = {"model": {"name": "tiny"}, "data": {"train": "train.jsonl"},
           "train": {"max_steps": 1, "output_dir": "runs", **train}}  # fmt: skip
    (tmp_path / "tunesmith.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return tmp_path / "tunesmith.yaml"


def _train(config, *overrides):  # noqa: ANN001, ANN002, ANN202
    return CliRunner().invoke(app, ["train", str(config), *overrides])


def test_invalid_data_is_refused_with_the_line_before_any_model_loads(tmp_path, no_model_load):
    config = _project(tmp_path)
    with open(tmp_path / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    res = _train(config)
    assert res.exit_code == 1 and "train.jsonl line 17" in res.output and "--force" in res.output, res.output
    res = _train(config, "data.train=missing.jsonl")
    assert res.exit_code == 1 and "missing.jsonl" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_output_that_cannot_be_written_is_refused_before_any_model_loads(tmp_path, no_model_load):
    config = _project(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    res = _train(config, f"train.output_dir={tmp_path / 'afile' / 'runs'}")
    assert res.exit_code == 1 and "is a file, not a folder" in res.output, res.output
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_memory_plan_that_cannot_fit_is_refused_with_the_estimate(tmp_path, no_model_load):
    config = _project(tmp_path)
    res = _train(config, "train.memory_budget_gb=0.01")
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "The memory budget (0.01 GB" in out and "about" in out, res.output
    assert "Settings that fit: train.memory_budget_gb=" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_guard_sees_a_model_load(tmp_path, no_model_load):
    """The control: a run that passes every check does reach the model load the tests above guard."""
    with pytest.raises(pytest.fail.Exception, match="model weights were loaded"):
        _train(_project(tmp_path))
