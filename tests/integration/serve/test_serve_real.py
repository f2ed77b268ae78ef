"""The embedded SmolLM2-135M served through the SDK: greedy answers equal the shared generate path, batched
concurrent answers equal sequential ones, stop strings cut, streaming reassembles the same text."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tunesmith.serve.app import ServeSettings, create_app
from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.real

MODEL = "smollm2-135m-instruct"
QUESTIONS = [
    "What is the capital of France?",
    "Name a red fruit.",
    "How do I reset my password?",
    "Say hello.",
]


def test_smollm2_served_answers_match_generate_and_batch(tmp_path: Path, smollm2_dir) -> None:
    from tunesmith.models.generate import GenerationSettings, generate
    from tunesmith.models.inference import load_for_inference

    app = create_app(ServeSettings(data_dir=tmp_path / "data", start_workers=False))
    client = in_process_client(app)

    def ask(q: str, **kw):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=16, **kw
        )

    sequential = [ask(q).choices[0].message.content for q in QUESTIONS]
    model, tok = load_for_inference(MODEL)
    direct = [
        g.text
        for g in generate(
            model,
            tok,
            [[{"role": "user", "content": q}] for q in QUESTIONS],
            GenerationSettings(max_tokens=16),
        )
    ]
    assert sequential == direct and all(sequential)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: ask(q).choices[0].message.content, QUESTIONS))
    assert together == sequential and max(app.state.engine.batches) > 1
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(QUESTIONS[0], stream=True) if c.choices)
    assert streamed == sequential[0]
    first_word = sequential[0].split()[1]
    cut = ask(QUESTIONS[0], stop=[first_word]).choices[0]
    assert first_word not in cut.message.content and cut.finish_reason == "stop"
    from tunesmith.serve.engine import ModelRef

    pieces: list[str] = []
    gen = app.state.engine.submit(
        ModelRef(base=MODEL),
        [{"role": "user", "content": QUESTIONS[0]}],
        GenerationSettings(max_tokens=16),
        on_text=pieces.append,
    ).result()
    assert len(pieces) > 3 and "".join(pieces) == gen.text == sequential[0]  # token by token, same text
    app.state.engine.close()
