"""dpo/reward resume like sft (tests/integration/train/test_pref_resume.py); a folder that is not a run is
refused before it is touched (a finished run stays finished)."""

import json

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.train.api import train

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("method", "refusal"),
    [("dpo", "not a tunesmith run folder"), ("reward", "not a tunesmith run folder")],
)
def test_resume_of_a_preference_run_leaves_the_run_untouched(tmp_path, method, refusal):
    run_dir = tmp_path / "runs" / "done"
    run_dir.mkdir(parents=True)
    summary = {"status": "completed", "method": method, "final_train_loss": 0.1}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    cfg = load_config(
        None, ["model.name=tiny", f"train.method={method}", f"train.output_dir={tmp_path / 'runs'}"]
    )
    with pytest.raises(TunesmithError, match=refusal):
        train(cfg, resume=run_dir)
    assert json.loads((run_dir / "summary.json").read_text()) == summary
