"""The eval section's grader settings: files resolved against the config's folder, bounded agreement."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.unit


def test_eval_graders_are_relative_to_the_config_file(tmp_path) -> None:
    (tmp_path / "graders").mkdir()
    (tmp_path / "graders" / "policy.json").write_text("{}")
    cfg_file = tmp_path / "tunesmith.yaml"
    cfg_file.write_text("eval:\n  graders: [graders/policy.json]\n  min_judge_agreement: 0.6\n")
    cfg = load_config(cfg_file)
    assert cfg.eval.graders == [(tmp_path / "graders" / "policy.json").resolve()]
    assert cfg.eval.min_judge_agreement == 0.6
    assert load_config(None).eval.min_judge_agreement == 0.4


def test_min_judge_agreement_is_bounded(tmp_path) -> None:
    cfg_file = tmp_path / "tunesmith.yaml"
    cfg_file.write_text("eval:\n  min_judge_agreement: 1.5\n")
    with pytest.raises(TunesmithError, match="min_judge_agreement"):
        load_config(cfg_file)
