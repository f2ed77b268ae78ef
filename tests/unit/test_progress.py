"""The one progress helper (issue 17): steps report count, elapsed time and ETA to the installed sink; the
CLI's line view prints them throttled; answer generation reports through it. A fake clock drives time."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from tunesmith.cli.progress_view import ProgressLines
from tunesmith.progress import ProgressEvent, step, use_sink

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_step_reports_count_elapsed_and_eta():
    clock, seen = FakeClock(), []
    with use_sink(seen.append), step("generating answers", 80, clock=clock) as s:
        clock.t += 10
        s.advance(16)  # 16 of 80 in 10 s: 64 left at 1.6/s -> 40 s
    assert [e.state for e in seen] == ["start", "advance", "done"]
    assert seen[1].done == 16 and seen[1].elapsed_s == 10 and seen[1].eta_s == pytest.approx(40.0)
    assert seen[0].eta_s is None  # nothing done yet: no estimate
    assert ProgressEvent("x", "advance", 3, None, 5.0).eta_s is None  # unknown length: no estimate


def test_without_a_sink_a_step_is_silent():
    with step("quiet", 2) as s:
        s.advance(2)
    assert s.done == 2


def test_line_view_throttles_and_shows_eta_and_the_end():
    out = io.StringIO()
    view = ProgressLines(Console(file=out, width=80), every_s=5.0)
    clock = FakeClock()
    with use_sink(view), step("generating answers", 1000, clock=clock) as s:
        for _ in range(10):  # 100 answers per second of fake time
            clock.t += 1
            s.advance(100)
    with use_sink(view), step("a quick step", 9, clock=clock) as s:
        clock.t += 0.5
        s.advance(9)  # done in under every_s: no line at all
    with use_sink(view), step("converting the model", clock=clock):
        clock.t += 27
    lines = out.getvalue().splitlines()
    assert lines == [
        "generating answers: 500/1,000 (50%), 5 s elapsed, about 5 s left",
        "generating answers: 1,000/1,000 (100%), 10 s elapsed",
        "converting the model ...",
        "converting the model: done in 27 s",
    ]


def test_generation_reports_each_batch(monkeypatch):
    import tunesmith.models.generate as gen

    monkeypatch.setattr(
        gen,
        "_generate_batch",
        lambda m, t, prompts, s: [gen.Generation("a", 1, 1, 0.0, "stop") for _ in prompts],
    )
    seen: list[ProgressEvent] = []
    with use_sink(seen.append):
        answers = gen.generate_from_ids(None, None, [[1, 2]] * 20, batch_size=8)
    assert len(answers) == 20
    assert [(e.state, e.done, e.total) for e in seen] == [
        ("start", 0, 20), ("advance", 8, 20), ("advance", 16, 20), ("advance", 20, 20), ("done", 20, 20),
    ]  # fmt: skip


def test_label_scoring_reports_each_batch():
    from tunesmith.models.generate import score_labels
    from tunesmith.models.load import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm("tiny"), load_tokenizer("tiny")
    convs = [[{"role": "user", "content": f"Route ticket {i}"}] for i in range(5)]
    seen: list[ProgressEvent] = []
    with use_sink(seen.append):
        scores = score_labels(model, tok, convs, ["billing", "technical"], batch_size=2)
    assert len(scores.predictions) == 5
    assert [(e.name, e.state, e.done, e.total) for e in seen] == [
        ("scoring labels", "start", 0, 5), ("scoring labels", "advance", 2, 5), ("scoring labels", "advance", 4, 5),
        ("scoring labels", "advance", 5, 5), ("scoring labels", "done", 5, 5),
    ]  # fmt: skip


def test_export_reports_its_merge_and_save(tmp_path):
    """A real export (tiny base + a fresh LoRA adapter, merged and saved) says what it is doing."""
    from peft import LoraConfig, get_peft_model

    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.export import export_merged

    run = tmp_path / "runs" / "r1"
    adapter = get_peft_model(load_causal_lm("tiny"), LoraConfig(r=4, target_modules=["q_proj"]))
    adapter.save_pretrained(str(run / "adapter"))
    load_tokenizer("tiny").save_pretrained(str(run / "adapter"))
    seen: list[ProgressEvent] = []
    with use_sink(seen.append):
        out = export_merged(run, tmp_path / "merged", base_model="tiny")
    assert (out / "config.json").exists()
    assert [(e.name, e.state) for e in seen] == [
        ("merging the adapter of r1 into tiny", "start"), ("merging the adapter of r1 into tiny", "done"),
        (f"saving the merged model to {out}", "start"), (f"saving the merged model to {out}", "done"),
    ]  # fmt: skip


@pytest.mark.parametrize("terminal", [False, True])
def test_the_cli_shows_progress_on_stderr_unless_stdout_is_a_terminal(monkeypatch, capsys, terminal):
    """cli.main.main installs the sink for every command: with stdout redirected, progress lines go to
    stderr and stdout holds the results only; on a terminal they share the console rich draws spinners on."""
    from tunesmith.cli.render import console

    monkeypatch.setattr(console, "_force_terminal", terminal)
    import tunesmith.cli.main as cli_main

    ticks = [0.0]  # the step starts at 0 s; every later reading is 10 s

    def clock() -> float:
        return ticks.pop() if ticks else 10.0

    def command() -> None:
        with step("indexing documents", 4, clock=clock) as s:
            s.advance(4)
        print("RESULT")

    monkeypatch.setattr(cli_main, "app", command)
    monkeypatch.setattr(sys, "argv", ["tunesmith", "rag", "index"])
    cli_main.main()
    out, err = capsys.readouterr()
    line = "indexing documents: 4/4 (100%), 10 s elapsed"
    if terminal:
        assert line in out and out.endswith("RESULT\n") and line not in err
    else:
        assert out == "RESULT\n" and line in err
