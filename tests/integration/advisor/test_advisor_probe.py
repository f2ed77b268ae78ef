"""--probe: a few real steps through train.api.train predict the measured time of the same whole run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

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


SPT, SETUP, SAVE = 0.002, 1.5, 0.25  # a recorded run: seconds per token, fixed setup, one checkpoint save


def recorded_probe(cfg, steps: int, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """Run the real probe (real training steps), with its clock reading the times of a recorded run in which
    every compute token costs ``SPT`` s, setup ``SETUP`` s and each checkpoint save ``SAVE`` s. Returns the
    probe's result and the events the training reported, in order (step numbers; "save" for a checkpoint)."""
    import types

    import tunesmith.advisor.probe as probe_mod
    import tunesmith.train.api as api

    step_tokens, _ = probe_mod.plan_steps(cfg)
    clock = {"now": 0.0}
    monkeypatch.setattr(probe_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    real_train, seen = api.train, []

    def recorded_train(probe_cfg, *, on_progress, **kw):  # noqa: ANN001, ANN003, ANN202
        def feed(event: dict) -> None:
            if event.get("event") == "step":
                seen.append(int(event["step"]))
                clock["now"] += SPT * step_tokens[int(event["step"]) - 1]
            elif event.get("event") == "checkpoint":
                seen.append("save")
                clock["now"] += SAVE
            on_progress(event)

        clock["now"] += SETUP
        return real_train(probe_cfg, on_progress=feed, **kw)

    monkeypatch.setattr(api, "train", recorded_train)
    return probe_mod.probe_run(cfg, steps), seen


def test_probe_prediction_is_its_arithmetic_on_recorded_step_times(tmp_path, tiny_model_dir, monkeypatch):
    """How close a prediction comes on real hardware is a benchmark's question; what a test can pin is that
    the probe turns the step times it records into the run's time exactly: fed the times of a run where every
    token costs SPT s, setup SETUP s and every save SAVE s, it must predict that run's total."""
    data = write_tickets(tmp_path / "train.jsonl", 60)
    cfg = validate_config_dict(
        {
            "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(data)},
            "train": {"finetune": "lora", "epochs": 3, "batch_tokens": 96, "seed": 1},
        }
    )
    probe, seen = recorded_probe(cfg, 8, monkeypatch)
    last = probe.steps + 1
    steps, saves = [e for e in seen if e != "save"], seen[last:]
    assert steps == list(range(1, last + 1)) and seen[:last] == steps  # the run's first steps, in order
    assert saves and set(saves) == {"save"}  # the probe's saves come after its last step
    assert len(probe.step_tokens) >= 4 * last and probe.boundaries_full > probe.boundaries_probe == 0
    boundary = SAVE * len(saves)  # what one evaluation + save costs in the recorded run
    assert probe.seconds_per_token == pytest.approx(SPT, rel=1e-9)
    assert probe.boundary_s == pytest.approx(boundary) and probe.tokens_per_s == pytest.approx(1 / SPT)
    assert probe.probe_wall_s == pytest.approx(SETUP + SPT * sum(probe.step_tokens[:last]) + boundary)
    # the recorded run in full: setup, every step's tokens, a boundary at each epoch end and at the end
    whole_run = SETUP + SPT * sum(probe.step_tokens) + boundary * (probe.boundaries_full + 1)
    assert probe.predicted_run_s() == pytest.approx(whole_run, rel=1e-9)
    assert probe.setup_s == pytest.approx(SETUP)

    cfg.train.output_dir = tmp_path / "runs"
    result = train(cfg)  # the run itself takes exactly the steps the probe planned
    assert result.status == "completed" and result.summary.steps == len(probe.step_tokens)


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
def test_probe_on_smollm2_plans_the_real_run(tmp_path, smollm2_dir, monkeypatch):
    """The embedded model: the probe's step plan is the run's, and its arithmetic holds on recorded times."""
    data = write_tickets(tmp_path / "train.jsonl", 14)
    cfg = validate_config_dict(
        {
            "model": {"name": str(smollm2_dir)},
            "data": {"train": str(data), "max_seq_len": 64},
            "lora": {"r": 8},
            "train": {"finetune": "lora", "epochs": 2, "batch_tokens": 64, "seed": 1},
        }
    )
    probe, seen = recorded_probe(cfg, 2, monkeypatch)
    last = probe.steps + 1
    assert seen[:last] == list(range(1, last + 1)) and len(probe.step_tokens) >= 2 * last
    boundary = SAVE * seen[last:].count("save")
    whole_run = SETUP + SPT * sum(probe.step_tokens) + boundary * (probe.boundaries_full + 1)
    assert probe.predicted_run_s() == pytest.approx(whole_run, rel=1e-9)
    monkeypatch.undo()
    cfg.train.output_dir = tmp_path / "runs"
    assert train(cfg).summary.steps == len(probe.step_tokens)
