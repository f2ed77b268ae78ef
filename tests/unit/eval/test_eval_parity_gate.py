"""The GGUF parity gates per quant, the quant read from a file name, and the export manifest reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.eval.parity import _gate, _quant_from_name
from tunesmith.models.llamacpp import read_manifest

pytestmark = pytest.mark.unit


def test_f16_gates_identical_answers_at_99_percent() -> None:
    assert _gate("f16", 0.99, 0.9, 0.5, gate_q4=False)[1] is True  # the metric does not matter for f16
    rule, ok = _gate("f16", 0.98, 0.9, 0.9, gate_q4=False)
    assert ok is False and rule == "identical answers 98.0% >= 99%"


def test_q8_gates_the_metric_within_one_point() -> None:
    assert _gate("q8_0", 0.5, 0.80, 0.81, gate_q4=False)[1] is True
    rule, ok = _gate("q8_0", 1.0, 0.80, 0.78, gate_q4=False)
    assert ok is False and rule == "metric difference 2.00 points <= 1"


def test_q4_is_reported_unless_gating_is_asked_for() -> None:
    rule, ok = _gate("q4_k_m", 0.2, 0.9, 0.5, gate_q4=False)
    assert ok is True and rule.startswith("q4_k_m: reported only")
    assert _gate("q4_k_m", 0.2, 0.9, 0.5, gate_q4=True)[1] is False


def test_quant_from_file_name_and_manifest(tmp_path: Path) -> None:
    assert _quant_from_name(Path("x/model-q4_k_m.gguf")) == "q4_k_m"
    assert _quant_from_name(Path("Model-Q8_0.gguf")) == "q8_0"
    with pytest.raises(TunesmithError, match="--quant"):
        _quant_from_name(Path("model.gguf"))
    gguf = tmp_path / "model-f16.gguf"
    gguf.write_bytes(b"GGUF")
    assert read_manifest(gguf) == {}
    (tmp_path / "export.json").write_text(json.dumps({"quant": "f16", "run": "/r"}))
    assert read_manifest(gguf)["run"] == "/r" and read_manifest(tmp_path)["quant"] == "f16"
    (tmp_path / "export.json").write_text("{broken")
    with pytest.raises(TunesmithError, match="not valid JSON"):
        read_manifest(gguf)
