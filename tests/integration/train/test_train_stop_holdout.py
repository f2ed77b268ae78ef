"""Issue 17: a clean stop (Ctrl-C, a stop request) measures the hold-out loss of the weights it stops with
before the summary is written; the summary never shows the loss of an earlier evaluation. (The Ctrl-C path
of the real CLI: test_train_cli.py::test_ctrl_c_saves_a_checkpoint_and_exits_cleanly.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_toy import toy_config

from tunesmith.models.load import load_tokenizer
from tunesmith.train.api import train
from tunesmith.train.checkpoints import best_checkpoint
from tunesmith.train.data import prepare_data
from tunesmith.train.loop import evaluate

pytestmark = pytest.mark.integration


def test_stop_request_remeasures_the_holdout_before_the_summary(tmp_path: Path, toy_model_dir: Path) -> None:
    # eval_every beyond the run: the only hold-out measurement before the stop is step 0's
    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.eval_every=100", "train.run_name=stop")
    steps: list[int] = []
    result = train(
        cfg,
        on_progress=lambda e: steps.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: bool(steps) and steps[-1] == 4,
    )
    s = result.summary
    assert s.status == "stopped" and s.steps == 4
    val_rows = [
        json.loads(line)
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        if "val_loss" in json.loads(line)
    ]
    assert [r["step"] for r in val_rows] == [0, 4]  # step 0, then the stop
    assert s.final_val_loss == pytest.approx(val_rows[-1]["val_loss"])
    assert s.final_val_loss < s.first_val_loss  # four steps of a learnable task moved it: not the stale one
    # and it is the loss of the weights the run stopped with, measured independently
    holdout = prepare_data(cfg, load_tokenizer(cfg.model.name)).holdout
    assert evaluate(result.model, holdout, cfg) == pytest.approx(s.final_val_loss, rel=1e-5)
    # it is the best so far, so the stop's checkpoint is marked best with the fresh loss in its state
    assert s.best_step == 4 and s.best_val_loss == pytest.approx(s.final_val_loss)
    best = best_checkpoint(result.run_dir / "checkpoints")
    assert best is not None and best.name == "step-00000004"
    assert json.loads((best / "state.json").read_text())["last_val"] == pytest.approx(s.final_val_loss)


def test_the_report_curves_of_a_stopped_run_show_its_measurements_and_stop(
    tmp_path: Path, toy_model_dir: Path
) -> None:
    """What `tunesmith eval --adapter RUN` puts in report.json/report.html for this stopped run: every logged
    training step, the hold-out at step 0 and at the stop, and where it stopped (not one dot)."""
    from tunesmith.eval.html import render_html
    from tunesmith.eval.run import training_curves, training_end
    from tunesmith.results.eval import EvalReport

    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.eval_every=100", "train.logging_steps=1",
                     "train.run_name=curves")  # fmt: skip
    steps: list[int] = []
    result = train(
        cfg,
        on_progress=lambda e: steps.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: bool(steps) and steps[-1] == 3,
    )
    curves, end = training_curves(result.run_dir), training_end(result.run_dir)
    assert [p[0] for p in curves["loss"]] == [1.0, 2.0, 3.0] and [p[0] for p in curves["val_loss"]] == [
        0.0,
        3.0,
    ]
    assert end is not None and (end.status, end.steps, end.total_steps) == ("stopped", 3, 12)
    html = render_html(EvalReport(task="classification", training=curves, training_end=end))
    assert "stopped (Ctrl-C or a stop request) at step 3 of 12" in html


def test_the_final_holdout_line_names_the_best_including_itself(tmp_path: Path, toy_model_dir: Path) -> None:
    """The last hold-out measurement is reported with the best so far counting it: a stop and a completed run
    printed "hold-out loss 1.0481 (best -)" and "hold-out loss 0.0238 (best 0.3004)" in a real try."""
    evals: list[dict] = []
    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.eval_every=100", "train.run_name=final")
    result = train(cfg, on_progress=lambda e: evals.append(e) if e["event"] == "eval" else None)
    s = result.summary
    assert s.status == "completed" and evals and evals[-1]["step"] == s.steps
    assert evals[-1]["val_loss"] == pytest.approx(s.final_val_loss)
    assert evals[-1]["best_val_loss"] == pytest.approx(s.best_val_loss)
    assert evals[-1]["best_val_loss"] <= evals[-1]["val_loss"]


def test_measuring_the_holdout_reports_progress_per_batch(tmp_path: Path, toy_model_dir: Path) -> None:
    """The hold-out measurement (70 examples: ~40 s on a busy 2-core machine, at step 0, at the end and after
    a Ctrl-C) printed nothing; it now reports its batches through the progress helper (count and ETA)."""
    from tunesmith.models.load import load_causal_lm
    from tunesmith.progress import use_sink

    cfg = toy_config(tmp_path, toy_model_dir, "lora", "train.run_name=p")
    holdout = prepare_data(cfg, load_tokenizer(cfg.model.name)).holdout
    events: list = []
    with use_sink(events.append):
        loss = evaluate(load_causal_lm(cfg.model.name), holdout, cfg)
    mine = [e for e in events if e.name == "measuring the hold-out loss"]
    assert mine[0].state == "start" and mine[-1].state == "done" and mine[0].total >= 1
    assert [e.done for e in mine if e.state == "advance"] == list(range(1, mine[0].total + 1))
    assert loss > 0
