"""Issue 17: `tunesmith eval --adapter RUN` on a run folder with no saved weights fails at once, before any
baseline work starts (it used to spend minutes on the prompted baselines first)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit


@pytest.fixture
def no_eval_work(monkeypatch):  # noqa: ANN201
    import tunesmith.eval.run as eval_run

    started: list = []
    monkeypatch.setattr(
        eval_run, "run", lambda *a, **k: started.append(a) or pytest.fail("eval work started")
    )
    return started


def _data(tmp_path):  # noqa: ANN202
    f = tmp_path / "holdout.jsonl"
    f.write_text(json.dumps({"text": "x", "label": "a"}) + "\n", encoding="utf-8")
    return f


@pytest.mark.parametrize("flag", ["--adapter", "--reward"])
def test_eval_on_a_run_without_weights_fails_before_any_work(tmp_path, no_eval_work, flag):
    run = tmp_path / "runs" / "stopped-early"
    (run / "checkpoints").mkdir(parents=True)  # a run folder, but nothing saved to evaluate
    args = ["eval", "--data", str(_data(tmp_path)), "--out", str(tmp_path / "report"), flag, str(run)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "holds no adapter/ or model/ folder" in res.output, res.output
    assert not no_eval_work and not (tmp_path / "report").exists()


def test_eval_refuses_a_missing_run_folder_and_an_out_that_is_a_file(tmp_path, no_eval_work):
    data = str(_data(tmp_path))
    res = CliRunner().invoke(
        app, ["eval", "--data", data, "--out", str(tmp_path / "r"), "--adapter", "runs/nope"]
    )
    assert res.exit_code == 2 and "--adapter runs/nope is not a folder" in res.output, res.output
    (tmp_path / "afile").write_text("keep me")
    res = CliRunner().invoke(app, ["eval", "--data", data, "--out", str(tmp_path / "afile")])
    assert res.exit_code == 2 and "is a file" in res.output and (tmp_path / "afile").read_text() == "keep me"
    assert not no_eval_work


@pytest.fixture
def reached_eval_work(monkeypatch):  # noqa: ANN201
    """The evaluation itself stops at once with a marker: the preflight let it through."""
    import tunesmith.eval.run as eval_run
    from tunesmith.errors import TunesmithError

    def stop(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise TunesmithError("EVAL WORK REACHED")

    monkeypatch.setattr(eval_run, "run", stop)


def test_eval_refuses_to_replace_an_earlier_report_unless_force(tmp_path, reached_eval_work):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text('{"earlier": true}')
    args = ["eval", "--data", str(_data(tmp_path)), "--model", "tiny", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "already holds an evaluation report" in res.output, res.output
    assert "--force" in res.output and "EVAL WORK REACHED" not in res.output
    assert (out / "report.json").read_text() == '{"earlier": true}'
    res = CliRunner().invoke(app, [*args, "--force"])
    assert "EVAL WORK REACHED" in res.output, res.output


def test_eval_refuses_an_out_under_a_file_and_bad_data_before_any_work(tmp_path, no_eval_work):
    (tmp_path / "afile").write_text("keep me")
    res = CliRunner().invoke(
        app, ["eval", "--data", str(_data(tmp_path)), "--out", str(tmp_path / "afile" / "report")]
    )
    assert res.exit_code == 2 and "cannot be written" in res.output, res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "a"}\n{"text": "y", "label": \n', encoding="utf-8")
    res = CliRunner().invoke(
        app, ["eval", "--data", str(bad), "--model", "tiny", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 1 and "line 2" in res.output and "Traceback" not in res.output, res.output
    assert not no_eval_work and not (tmp_path / "r").exists()


def test_eval_refuses_when_the_models_do_not_fit_the_memory_available(tmp_path, no_eval_work, monkeypatch):
    import tunesmith.train.guards as guards

    monkeypatch.setattr(guards, "available_memory", lambda: 300_000_000)  # what this machine reports
    args = ["eval", "--data", str(_data(tmp_path)), "--model", "tiny", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "Evaluating needs at least 0.6 GB but 0.3 GB of memory is available" in out
    assert "1 copy of tiny" in out and "a batch of 8 answers adds up to" in out, res.output
    assert not no_eval_work


def test_eval_is_not_refused_for_the_batch_upper_bound(tmp_path, reached_eval_work, monkeypatch):
    """Weights and runtime fit, the batch's upper bound (prompts of data.max_seq_len) would not: it runs."""
    import tunesmith.train.guards as guards
    from tunesmith.models.memory import inference_bytes
    from tunesmith.models.params import load_architecture
    from tunesmith.train.plan import CPU_RUNTIME

    arch = load_architecture("tiny")
    fixed = arch.total * 4 + CPU_RUNTIME
    assert inference_bytes(arch, copies=0, batch=8, tokens=1024 + 128) > 1_000_000  # the bound is not nothing
    monkeypatch.setattr(guards, "available_memory", lambda: int(fixed) + 1_000_000)
    args = ["eval", "--data", str(_data(tmp_path)), "--model", "tiny", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    assert "EVAL WORK REACHED" in res.output, res.output


def test_a_run_id_typo_or_prefix_is_answered_with_the_run_meant(tmp_path, no_eval_work, monkeypatch):
    """A newcomer's typo (`...-sft-lorra`) or a short prefix of the id names the run folder that exists."""
    run_id = "20261129-180130-sft-lora"
    (tmp_path / "runs" / run_id / "adapter").mkdir(parents=True)
    (tmp_path / "runs" / "20261128-090000-dpo-lora").mkdir()
    monkeypatch.chdir(tmp_path)
    data = str(_data(tmp_path))
    for typed in ("runs/20261129-180130-sft-lorra", "runs/20261129-1801"):
        res = CliRunner().invoke(app, ["eval", "--data", data, "--out", "r", "--adapter", typed])
        out = " ".join(res.output.split())
        assert res.exit_code == 2 and f"Did you mean runs/{run_id}?" in out, res.output
    res = CliRunner().invoke(app, ["eval", "--data", data, "--out", "r", "--adapter", "runs/zzz"])
    assert res.exit_code == 2 and "Did you mean" not in res.output and "runs list" in res.output
    # chat, serve and export find run weights through the same function
    from tunesmith.errors import TunesmithError
    from tunesmith.models.inference import locate_run_weights

    with pytest.raises(TunesmithError) as err:
        locate_run_weights(tmp_path / "runs" / "20261129-180130-sft-lorra")
    assert "does not exist" in err.value.message and run_id in err.value.hint
    assert not no_eval_work


def test_without_a_terminal_each_candidate_is_named_before_its_progress_lines(tmp_path, monkeypatch):
    """In a log (no spinner) the lines "generating answers: 8/70 ..." used to come with no word of whether
    they were zero-shot's, few-shot's or the fine-tuned model's."""
    import tunesmith.eval.run as eval_run
    from tunesmith.errors import TunesmithError

    def one_candidate(spec, on_progress=None, **k):  # noqa: ANN001, ANN003, ANN202
        on_progress({"event": "candidate", "name": "base:few-shot", "n": 70})
        raise TunesmithError("EVAL WORK REACHED")

    monkeypatch.setattr(eval_run, "run", one_candidate)
    args = ["eval", "--data", str(_data(tmp_path)), "--model", "tiny", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    assert "Evaluating base:few-shot on 70 examples..." in res.output, res.output
    assert res.output.index("base:few-shot") < res.output.index("EVAL WORK REACHED")
