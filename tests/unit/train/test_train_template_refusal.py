"""`tunesmith train` refuses a chat template that would train the wrong thing before step 1 (case
noend-template), with the finding and the fix, and writes nothing; --force trains anyway (the training
half of --force is in tests/integration/train/test_train_safety.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.models.load import load_tokenizer
from tunesmith.train.data import prepare_data

pytestmark = pytest.mark.unit

NOEND_CASE = Path(__file__).parents[2] / "assets" / "cases" / "noend-template"


@pytest.fixture
def noend_model(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The case's model: the tiny model with the GLM-style template (nothing closes the assistant turn)."""
    model = tmp_path / "tiny-noend"
    shutil.copytree(tiny_model_dir, model)
    shutil.copy(NOEND_CASE / "chat_template.jinja", model / "chat_template.jinja")
    return model


def test_case_noend_template_train_refuses_before_step_1(
    tmp_path: Path, noend_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.cli.main import main

    runs = tmp_path / "runs"
    monkeypatch.setattr(
        sys,
        "argv",
        ["tunesmith", "train", str(NOEND_CASE / "cfg.yaml"), f"model.name={noend_model}",
         f"data.train={NOEND_CASE / 'chat12_nosys.jsonl'}", f"train.output_dir={runs}"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as refused:
        main()
    out, err = capsys.readouterr()
    assert refused.value.code == 1 and "Traceback" not in out + err
    text = " ".join((out + err).split())
    assert "eos_not_trained" in text and "training refuses to start" in text
    assert "'<|im_end|>'" in text and "--force" in text  # the fix and the override
    assert not runs.exists()  # refused before anything was written


def test_force_lets_the_data_through_and_a_good_template_passes(
    noend_model: Path, tiny_model_dir: Path
) -> None:
    overrides = [f"data.train={NOEND_CASE / 'chat12_nosys.jsonl'}"]
    cfg = load_config(NOEND_CASE / "cfg.yaml", [f"model.name={noend_model}", *overrides])
    with pytest.raises(TunesmithError, match="eos_not_trained"):
        prepare_data(cfg, load_tokenizer(str(noend_model)))
    forced = prepare_data(cfg, load_tokenizer(str(noend_model)), force=True)
    assert len(forced.train) + len(forced.holdout) == 12
    good = load_config(NOEND_CASE / "cfg.yaml", [f"model.name={tiny_model_dir}", *overrides])
    assert len(prepare_data(good, load_tokenizer(str(tiny_model_dir))).train) > 0
