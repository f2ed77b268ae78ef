"""`train.report_to: [tensorboard, mlflow]` with the real packages (the `trackers` extra): the TensorBoard
event file and the MLflow run (a file store under tmp_path, read back with MLflow's client) hold the same
metrics at the same steps as metrics.jsonl; a resume continues the same MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_toy import toy_config

pytestmark = pytest.mark.integration


def _jsonl_metrics(run_dir: Path) -> dict[str, dict[int, float]]:
    """name -> {step: value} from metrics.jsonl, every number but step and time (what Run.log sends)."""
    out: dict[str, dict[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key not in ("step", "time") and isinstance(value, int | float):
                out.setdefault(key, {})[row["step"]] = float(value)
    return out


def test_tensorboard_and_mlflow_hold_the_metrics_of_metrics_jsonl(tmp_path, toy_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tunesmith.train.api import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: a file store in the runs folder
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what tunesmith sets; restored after the test
    cfg = toy_config(
        tmp_path, toy_model_dir, "lora", "train.max_steps=4", "train.eval_every=2", "train.run_name=tracked",
        "train.report_to=[tensorboard,mlflow]",
    )  # fmt: skip
    result = train(cfg)
    assert result.status == "completed" and result.summary.steps == 4
    expected = _jsonl_metrics(result.run_dir)
    assert {"loss", "lr", "val_loss"} <= set(expected) and sorted(expected["loss"]) == [1, 2, 3, 4]

    # TensorBoard: every metric of metrics.jsonl, at its steps, with its values (stored as float32)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for name, by_step in expected.items():
        got = {e.step: e.value for e in events.Scalars(name)}
        assert sorted(got) == sorted(by_step), name
        for step, value in by_step.items():
            assert got[step] == pytest.approx(value, rel=1e-6, abs=1e-7), f"{name} at step {step}"

    # MLflow: one run named after the tunesmith run, in the file store under the runs folder
    record = json.loads((result.run_dir / "mlflow.json").read_text())
    assert record["tracking_uri"] == (tmp_path / "runs" / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.tags["tunesmith.method"] == "sft"
    assert client.get_experiment(run.info.experiment_id).name == "tunesmith"
    assert set(run.data.metrics) == set(expected)
    for name, by_step in expected.items():
        got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
        assert got == by_step, name  # MLflow keeps float64: the same numbers exactly

    # a resume continues the same MLflow run (no second run in the experiment)
    resumed = train(cfg, resume=result.run_dir)
    assert resumed.status == "completed"
    again = json.loads((result.run_dir / "mlflow.json").read_text())
    assert again == record
    assert client.get_run(record["run_id"]).info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
