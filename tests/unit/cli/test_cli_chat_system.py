"""Issue 17: `tunesmith chat RUN` uses the system prompt the run was trained with (the config's, or the one
generated for a classification table); `--system` replaces it and `--system ''` turns it off. The model is
scripted: the test is about which conversation reaches it (loading and generation are tested elsewhere)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from tunesmith.cli.main import main
from tunesmith.data.formats import classification_system_prompt
from tunesmith.models.generate import Generation

pytestmark = pytest.mark.unit


def _chat(monkeypatch, target: str, *extra: str) -> list:
    import tunesmith.models.generate as gen
    import tunesmith.models.inference as inference

    seen: list = []

    def fake_generate(model, tok, convs, settings, tools=None):  # noqa: ANN001, ANN202
        assert tools is None  # no --tools: no tool list rendered
        seen.append([dict(m) for m in convs[0]])
        return [Generation("billing", 1, 1, 0.1, "stop")]

    monkeypatch.setattr(inference, "load_for_inference", lambda *a, **k: (object(), object()))
    monkeypatch.setattr(gen, "generate", fake_generate)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/exit\n"))
    monkeypatch.setattr(sys, "argv", ["tunesmith", "chat", target, *extra])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    return seen[0]


def _run(tmp_path, data_yaml: str):  # noqa: ANN202
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.resolved.yaml").write_text(f"model:\n  name: tiny\ndata:\n{data_yaml}", encoding="utf-8")
    return run


def test_chat_on_a_run_uses_its_configured_system_prompt(tmp_path, monkeypatch):
    run = _run(tmp_path, "  train: train.jsonl\n  system_prompt: You route support tickets.\n")
    conv = _chat(monkeypatch, str(run))
    assert conv[0] == {"role": "system", "content": "You route support tickets."}
    assert conv[-1] == {"role": "user", "content": "hello"}
    assert _chat(monkeypatch, str(run), "--system", "Be brief.")[0]["content"] == "Be brief."
    assert [m["role"] for m in _chat(monkeypatch, str(run), "--system", "")] == ["user"]


def test_chat_on_a_classification_run_uses_the_generated_prompt(tmp_path, monkeypatch):
    run = _run(tmp_path, "  train: train.jsonl\n")
    rows = [{"text": f"ticket {i}", "label": ["billing", "technical"][i % 2]} for i in range(12)]
    (run / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    conv = _chat(monkeypatch, str(run))
    assert conv[0] == {"role": "system", "content": classification_system_prompt(["billing", "technical"])}
