"""--probe: a few real steps through train.api.train predict the measured time of the same whole run."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tunesmith.advisor.probe import probe_run
from tunesmith.config import validate_config_dict
from tunesmith.train.api import train

pytestmark = pytest.mark.integration


def write_tickets(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    labels = ["billing", "technical", "account"]
    with path.open("w") as f:
        for i in range(n):
            label = rng.choice(labels)
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {
                                "role": "user",
                                "content": f"Ticket {i}: my {label} problem {i * 7} needs help please",
                            },
                            {"role": "assistant", "content": label},
                        ]
                    }
                )
                + "\n"
            )
    return path


def measure_probe_and_run(cfg_dict: dict, tmp_path: Path, probe_steps: int) -> tuple[float, float, object]:
    cfg = validate_config_dict(cfg_dict)
    probe = probe_run(cfg, probe_steps)
    predicted = probe.predicted_run_s()
    cfg.train.output_dir = tmp_path / "runs"
    start = time.perf_counter()
    result = train(cfg)
    measured = time.perf_counter() - start
    assert result.summary.steps == len(probe.step_tokens)  # the probe planned the run's real steps
    figures = {
        "model": cfg.model.name,
        "predicted_s": predicted,
        "measured_s": measured,
        "error_pct": 100 * (predicted - measured) / measured,
        "run_steps": len(probe.step_tokens),
        "probe_steps": probe.steps + 1,
        "probe_wall_s": probe.probe_wall_s,
        "tokens_per_s": probe.tokens_per_s,
    }
    (tmp_path / "probe_figures.json").write_text(json.dumps(figures))
    print("probe figures:", figures)
    return predicted, measured, probe


def test_probe_on_tiny_predicts_the_whole_run_within_25_percent(tmp_path, tiny_model_dir):
    data = write_tickets(tmp_path / "train.jsonl", 60)
    cfg = {
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(data)},
        "train": {"finetune": "lora", "epochs": 3, "batch_tokens": 96, "seed": 1},
    }
    predicted, measured, probe = measure_probe_and_run(cfg, tmp_path, probe_steps=8)
    assert len(probe.step_tokens) >= 4 * (probe.steps + 1)  # the run is much longer than the probe
    assert abs(predicted - measured) / measured < 0.25, (predicted, measured)


def test_cli_probe_prints_calibrated_time_and_uncalibrated_error(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from tunesmith.cli.main import app

    data = write_tickets(tmp_path / "train.jsonl", 24)
    res = CliRunner().invoke(
        app,
        [
            "estimate",
            "--model",
            str(tiny_model_dir),
            "--method",
            "lora",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--gpu",
            "cpu",
            "--probe",
            "--probe-steps",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Probe" in res.output and "uncalibrated estimate was" in res.output and "error" in res.output


@pytest.mark.real
def test_probe_on_smollm2_predicts_the_whole_run_within_25_percent(tmp_path, smollm2_dir):
    data = write_tickets(tmp_path / "train.jsonl", 14)
    cfg = {
        "model": {"name": str(smollm2_dir)},
        "data": {"train": str(data), "max_seq_len": 64},
        "lora": {"r": 8},
        "train": {"finetune": "lora", "epochs": 2, "batch_tokens": 64, "seed": 1},
    }
    predicted, measured, probe = measure_probe_and_run(cfg, tmp_path, probe_steps=2)
    assert len(probe.step_tokens) >= 2 * (probe.steps + 1)
    assert abs(predicted - measured) / measured < 0.25, (predicted, measured)
