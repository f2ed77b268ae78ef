"""`tunesmith chat` prints the answer after a styled prompt: the prompt is markup, the answer is text.

The bug this pins: the line was printed with markup off, so users saw ``[green]model>[/] ...`` literally.
The model is scripted (the test is about rendering); loading and generation are tested elsewhere."""

from __future__ import annotations

import io
import sys

import pytest

from tunesmith.cli.main import main
from tunesmith.models.generate import Generation

pytestmark = pytest.mark.unit

ANSWER = "see [bold]this[/] and [/] too"  # brackets in an answer are the model's text, never markup


def test_chat_prints_the_prompt_styled_and_the_answer_verbatim(capsys, monkeypatch) -> None:  # noqa: ANN001
    import tunesmith.models.generate as gen
    import tunesmith.models.inference as inference
    from tunesmith.cli.render import console

    monkeypatch.setattr(inference, "load_for_inference", lambda *a, **k: (object(), object()))
    monkeypatch.setattr(
        gen,
        "generate",
        lambda model, tok, convs, settings, tools=None: [Generation(ANSWER, 5, 7, 0.5, "stop")],
    )
    monkeypatch.setattr(console, "width", 200)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/exit\n"))
    monkeypatch.setattr(sys, "argv", ["tunesmith", "chat", "tiny"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out.splitlines()
    # input() writes its "you> " prompt to stdout without a newline, so the answer follows it on one line
    assert out == [
        "chatting with tiny; /reset clears the history, /exit quits",
        f"you> model> {ANSWER}",
        "7 tokens, 14.0 tok/s",
        "you> ",
    ]
