"""Acceptance (issue 15): SmolLM2-135M fine-tuned on the demo's data (a short LoRA run), exported to f16 and
q8_0 GGUF with llama.cpp's own converter and quantizer, passes `tunesmith export --verify` on the demo's
hold-out: llama.cpp's greedy answers against tunesmith's, under each quant's gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_support import require_llamacpp
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = [pytest.mark.real, pytest.mark.llamacpp]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, smollm2_dir) -> tuple[Path, Path]:  # noqa: ANN001
    """(run folder, hold-out file): the demo's quick data, 12 LoRA steps with the demo's own config."""
    from tunesmith.data.split import split_file
    from tunesmith.train.api import train
    from tunesmith.workflows.demo import QUICK, _generator, demo_config

    require_llamacpp()
    out = tmp_path_factory.mktemp("demo")
    rows = _generator().write_all(out / "data" / "tickets.jsonl", QUICK.n_examples, seed=7)
    cfg = demo_config(out, QUICK, None)
    split = split_file(rows, out / "data", holdout=QUICK.holdout, seed=cfg.data.seed, task="classification")
    cfg.data.train, cfg.data.holdout = split.train_path, split.holdout_path
    cfg.train.max_steps = 12
    result = train(cfg)
    assert result.status in ("completed", "early_stopped"), result.status
    return Path(result.run_dir), Path(split.holdout_path)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_demo_fine_tune_exported_to_gguf_passes_verify(tmp_path: Path, demo_run, quant: str) -> None:  # noqa: ANN001
    run, holdout = demo_run
    out = tmp_path / f"gguf-{quant}"
    res = CliRunner().invoke(
        app,
        [
            "export",
            str(run),
            "--format",
            "gguf",
            "--quant",
            quant,
            "--out",
            str(out),
            "--verify",
            str(holdout),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "parity.json").read_text())
    print(f"\n{quant}: {json.dumps({k: v for k, v in report.items() if k != 'disagreements'})}")
    assert report["n"] == 24 and report["passed"] is True
    assert (
        report["prompt_tokens_identical"] == 1.0
    )  # llama.cpp tokenizes the rendered prompts as transformers does
    if quant == "f16":
        assert report["identical_answers"] >= 0.99
        assert report["max_logprob_diff"] < 0.05
    else:
        assert abs(report["metric_gguf"] - report["metric_tunesmith"]) <= 0.01
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["system_prompt"].startswith("Route the Northwind Cloud support ticket.")
    assert (
        manifest["metadata"]["tokenizer.ggml.eot_token_id"]
        == manifest["metadata"]["tokenizer.ggml.eos_token_id"]
    )
    assert (out / "Modelfile").read_text().count('SYSTEM """Route the Northwind Cloud support ticket.') == 1
