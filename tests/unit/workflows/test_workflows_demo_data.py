"""The demo's ticket generator: seeded, balanced, varied, and the escalation policy holds on every row."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tunesmith.config import load_config
from tunesmith.workflows import demo

pytestmark = pytest.mark.unit
TRIGGER = re.compile(r"enterprise|legal|lawyer|chargeback|production (environment )?is down", re.IGNORECASE)


def test_generator_is_seeded_balanced_and_follows_the_policy():
    gen = demo._generator()
    rows = gen.generate(200, seed=7)
    assert rows == gen.generate(200, seed=7) and rows != gen.generate(200, seed=8)
    assert Counter(r["label"] for r in rows) == {lab: 50 for lab in gen.LABELS}
    assert len({r["text"] for r in rows}) == 200
    for r in rows:  # priority exactly when a trigger is present, whatever the topic
        assert (r["label"] == "priority") == bool(TRIGGER.search(r["text"])), r
    decoys = [
        r for r in rows if r["label"] != "priority" and re.search(r"urgent|asap", r["text"], re.IGNORECASE)
    ]
    assert len(decoys) >= 10  # urgency words alone must not predict the label
    assert len({r["text"].split(".")[0] for r in rows}) > 100  # varied wording


def test_write_all_and_demo_config(tmp_path):
    path = demo._generator().write_all(tmp_path / "t.jsonl", 12)
    assert [json.loads(line)["label"] for line in path.read_text().splitlines()]
    cfg = demo.demo_config(tmp_path, demo.QUICK, None)
    assert cfg.train.output_dir == tmp_path / "runs" and cfg.eval.require == demo.GATE
    assert load_config(demo.EXAMPLE_DIR / "tunesmith.yaml").data.system_prompt == cfg.data.system_prompt


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    from tunesmith.errors import TunesmithError

    with pytest.raises(TunesmithError, match="not empty"):
        demo.run(tmp_path, quick=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
