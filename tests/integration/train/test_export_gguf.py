"""`tunesmith export --format gguf` and `tunesmith eval --engine llamacpp` end to end on a tiny Llama (with
SmolLM2's tokenizer): llama.cpp's converter and quantizer, the metadata read back, the Ollama Modelfile checked
against the model's own template, and the parity check passing, failing (exit 1, disagreements shown) and
refusing a tokenizer llama.cpp does not know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_support import require_llamacpp, smol_tiny_adapter_run
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = [pytest.mark.integration, pytest.mark.llamacpp]

ROWS = [
    ("My invoice is wrong", "billing"),
    ("The app crashes on start", "technical"),
    ("Reset my password", "account"),
    ("Refund please, I was charged twice", "billing"),
    ("Error 500 when I log in", "technical"),
    ("Change the email on my account", "account"),
]
SYSTEM = "Route the ticket. Answer with one queue: account, billing, technical."


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_dir) -> tuple[Path, Path, Path]:  # noqa: ANN001
    """(run, another run with other adapter weights, hold-out file)."""
    require_llamacpp()
    root = tmp_path_factory.mktemp("gguf")
    holdout = root / "holdout.jsonl"
    holdout.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS))
    return smol_tiny_adapter_run(root, smollm2_dir), smol_tiny_adapter_run(root, smollm2_dir, seed=1), holdout


def test_gguf_f16_export_metadata_modelfile_and_verify(tmp_path: Path, runs) -> None:  # noqa: ANN001
    from tunesmith.models.llamacpp import gguf_metadata
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.ollama import parse_modelfile, render_ollama

    run, _, holdout = runs
    out = tmp_path / "f16"
    args = [
        "export",
        str(run),
        "--format",
        "gguf",
        "--out",
        str(out),
        "--system",
        SYSTEM,
        "--verify",
        str(holdout),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "PASS identical answers 100.0% >= 99%" in res.output
    tok = load_tokenizer(str(run / "adapter"))
    meta = gguf_metadata(out / "model-f16.gguf")
    assert meta["tokenizer.chat_template"] == tok.chat_template
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id == meta["tokenizer.ggml.eot_token_id"]
    assert meta["general.file_type"] == 1  # LLAMA_FTYPE_MOSTLY_F16

    # The Modelfile, parsed back, renders a conversation exactly as the model's own template does.
    mf = parse_modelfile((out / "Modelfile").read_text())
    assert mf.model == "model-f16.gguf" and mf.stop == ("<|im_end|>",) and mf.system == SYSTEM
    conv = [
        {"role": "user", "content": "My invoice is wrong"},
        {"role": "assistant", "content": "billing"},
        {"role": "user", "content": "And the app\ncrashes too"},
    ]
    ours = tok.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, *conv], tokenize=False, add_generation_prompt=True
    )
    assert render_ollama(mf.template, conv, mf.system) == ours

    report = json.loads((out / "parity.json").read_text())
    assert (
        report["passed"] and report["identical_answers"] == 1.0 and report["prompt_tokens_identical"] == 1.0
    )
    assert 0 <= report["max_logprob_diff"] < 0.01  # f16 weights move log-probs by thousandths at most here
    assert report["disagreements"] == []


def test_eval_engine_llamacpp_q4_reported_and_mismatched_run_fails(tmp_path: Path, runs) -> None:  # noqa: ANN001
    run, other, holdout = runs
    out = tmp_path / "q4"
    res = CliRunner().invoke(
        app, ["export", str(run), "--format", "gguf", "--quant", "q4_k_m", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    gguf = out / "model-q4_k_m.gguf"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--engine",
            "llamacpp",
            "--model",
            str(gguf),
            "--data",
            str(holdout),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "parity.json").read_text())
    assert report["quant"] == "q4_k_m" and report["run"] == str(run.resolve())  # from export.json
    assert report["gate"].startswith("q4_k_m: reported only") and report["passed"] is True

    # The same GGUF judged against a run it was not exported from: the answers differ, the gate fails (exit 1)
    # and the report lists the disagreements.
    f16 = tmp_path / "f16"
    assert (
        CliRunner()
        .invoke(app, ["export", str(run), "--format", "gguf", "--out", str(f16), "--no-modelfile"])
        .exit_code
        == 0
    )
    assert not (f16 / "Modelfile").exists()
    res = CliRunner().invoke(
        app,
        ["eval", "--engine", "llamacpp", "--model", str(f16 / "model-f16.gguf"), "--data", str(holdout),
         "--adapter", str(other), "--out", str(tmp_path / "bad")],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "FAIL identical answers" in res.output and "does not match the run" in res.output
    bad = json.loads((tmp_path / "bad" / "parity.json").read_text())
    assert bad["passed"] is False and bad["identical_answers"] < 0.99 and bad["disagreements"]
    assert {"index", "input", "reference", "tunesmith", "gguf"} <= set(bad["disagreements"][0])


def test_gguf_export_refuses_a_tokenizer_llamacpp_does_not_know(tmp_path: Path, tiny_model_dir: Path) -> None:
    require_llamacpp()
    out = tmp_path / "tiny"
    res = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "gguf", "--out", str(out)])
    assert res.exit_code == 1
    assert "pre-tokenizer" in res.output and "would tokenize" in res.output.replace("\n", " ")
    assert not out.exists() and not list(tmp_path.glob(".export-*"))  # nothing half-written is left
