"""The one-time SmolLM2 conversion reports progress with an ETA (issue 17: it sat silent ~26-80 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.progress import ProgressEvent, use_sink

pytestmark = pytest.mark.real


def test_first_conversion_reports_its_phases_with_an_eta_and_ends_at_its_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.models.load import ensure_smollm2

    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))  # no cached copy: convert from the GGUF
    events: list[ProgressEvent] = []
    with use_sink(events.append):
        folder = ensure_smollm2()
    assert folder.is_relative_to(tmp_path) and (folder / ".complete").exists()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"
    mine = [e for e in events if e.name.startswith("converting SmolLM2")]
    assert [e.state for e in mine] == ["start", "advance", "advance", "advance", "advance", "done"]
    assert all(e.total == 100 for e in mine)
    done = [e.done for e in mine if e.state == "advance"]
    assert done == sorted(done) and done[-1] == 100
    assert all(e.eta_s is not None for e in mine if e.state == "advance")
    events.clear()
    with use_sink(events.append):  # converted once: the second use is silent
        assert ensure_smollm2() == folder
    assert events == []
