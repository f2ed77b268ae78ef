"""End to end through the real openai SDK (strict response validation) with a real worker process training
the tiny model: upload, job, events, checkpoints, chat with the ft: model (streaming and not), adapters
chosen per request over one base, batching, the LRU budget, embeddings, no train/serve skew, delete."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from serve_int_toy import add_lines, start_app, wait_for

from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.integration

OVERRIDES = ["train.max_steps=12", "train.save_every=4", "train.keep_checkpoints=10", "data.max_seq_len=64"]
PROMPT = [{"role": "user", "content": "add 3 4"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("serve-e2e")
    app = start_app(data_dir, OVERRIDES)
    client = in_process_client(app)
    upload = client.files.create(file=("add.jsonl", add_lines(16)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=upload.id,
        suffix="adder",
        seed=7,
        hyperparameters={"learning_rate_multiplier": 250, "n_epochs": 20},
    )
    assert job.status == "queued" and job.hyperparameters.learning_rate_multiplier == 250
    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
        240,
        "the job",
    )
    assert done.status == "succeeded", done.error
    yield app, client, upload, done
    app.state.supervisor.stop()
    app.state.engine.close()


def test_job_events_and_checkpoints(served) -> None:
    app, client, upload, job = served
    assert (
        job.fine_tuned_model.startswith("ft:tiny:local:adder:") and job.trained_tokens > 0 and job.finished_at
    )
    assert client.files.content(upload.id).read() == add_lines(16)
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # auto-paginates, newest first
    msgs = [e.message for e in events]
    assert msgs[0] == "The job has successfully completed", msgs
    assert msgs[-1].startswith("Created fine-tuning job")
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    metrics = [e.data for e in events if e.type == "metrics" and "train_loss" in e.data]
    assert sorted(m["step"] for m in metrics) == list(range(1, 13))
    assert all(m["train_loss"] > 0 for m in metrics)
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id)
    steps = [c.step_number for c in ckpts.data]
    assert steps == sorted(steps, reverse=True) and {4, 8, 12} <= set(steps) and len(steps) == len(set(steps))
    c3 = next(c for c in ckpts.data if c.step_number == 4)
    assert (
        c3.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-4" and c3.metrics.train_loss > 0
    )
    assert ckpts.first_id == ckpts.data[0].id and ckpts.last_id == ckpts.data[-1].id
    ids = [m.id for m in client.models.list()]
    assert job.fine_tuned_model in ids and c3.fine_tuned_model_checkpoint in ids
    assert client.models.retrieve(job.fine_tuned_model).owned_by == "org-local"


def test_chat_with_the_fine_tuned_model_stream_and_not(served) -> None:
    app, client, _, job = served
    r = client.chat.completions.create(
        model=job.fine_tuned_model, messages=PROMPT, temperature=0, max_tokens=12
    )
    text = r.choices[0].message.content
    assert (
        r.model == job.fine_tuned_model
        and r.usage.completion_tokens >= 1
        and r.choices[0].finish_reason in ("stop", "length")
    )
    chunks = list(
        client.chat.completions.create(
            model=job.fine_tuned_model,
            messages=PROMPT,
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    base = client.chat.completions.create(model="tiny", messages=PROMPT, temperature=0, max_tokens=12)
    # the adapter is really applied per request: the base answers differently
    assert (base.choices[0].message.content, base.choices[0].finish_reason) != (
        text,
        r.choices[0].finish_reason,
    )
    ck = client.chat.completions.create(
        model=f"{job.fine_tuned_model}:ckpt-step-4", messages=PROMPT, temperature=0, max_tokens=12
    )
    assert ck.usage.completion_tokens >= 1


def test_no_train_serve_skew(served, tmp_path: Path) -> None:
    """The server's greedy answer equals the shared generate path (what eval uses) and `tunesmith chat`."""
    from tunesmith.models.generate import GenerationSettings, generate
    from tunesmith.models.inference import load_for_inference

    app, client, _, job = served
    run_dir = Path(app.state.store.get_job(job.id)["run_dir"])
    prompts = ["add 3 4", "add 6 1", "add 0 2"]
    served_answers = [
        client.chat.completions.create(
            model=job.fine_tuned_model,
            messages=[{"role": "user", "content": p}],
            temperature=0,
            max_tokens=12,
        )
        .choices[0]
        .message.content
        for p in prompts
    ]
    model, tok = load_for_inference(None, run_dir)
    direct = [
        g.text
        for g in generate(
            model, tok, [[{"role": "user", "content": p}] for p in prompts], GenerationSettings(max_tokens=12)
        )
    ]
    assert served_answers == direct and any(served_answers)
    out = subprocess.run(
        [sys.executable, "-m", "tunesmith", "chat", str(run_dir), "--max-tokens", "12"],
        input="add 3 4\n/exit\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    # the exact line: input()'s "you> " prompt, then the styled "model>" (markup, not literal tags), the answer
    assert f"\nyou> model> {served_answers[0]}\n" in out.stdout, out.stdout
    # tunesmith eval's own path: its prompts (system prompt from the run) and its evaluate()
    from tunesmith.config import EvalConfig
    from tunesmith.eval.run import EvalSpec, candidate_prompts, evaluate, prepare

    holdout = tmp_path / "holdout.jsonl"
    holdout.write_bytes(add_lines(3))
    ctx = prepare(
        EvalSpec(
            data=holdout, adapter=run_dir, baselines=("zero-shot",), settings=EvalConfig(max_new_tokens=12)
        )
    )
    eval_answers = evaluate(ctx, "finetuned", model, tok).answers
    convs = candidate_prompts(ctx, "finetuned")
    via_server = [
        client.chat.completions.create(model=job.fine_tuned_model, messages=c, temperature=0, max_tokens=12)
        .choices[0]
        .message.content
        for c in convs
    ]
    assert via_server == eval_answers


def test_concurrent_requests_are_batched_and_match_sequential(served) -> None:
    app, client, _, job = served
    engine = app.state.engine
    asks = [(m, f"add {i} {i + 1}") for i in range(4) for m in (job.fine_tuned_model, "tiny")]

    def ask(item):
        model, q = item
        return (
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=8
            )
            .choices[0]
            .message.content
        )

    sequential = [ask(a) for a in asks]
    before = len(engine.batches)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        concurrent_answers = list(pool.map(ask, asks))
    assert concurrent_answers == sequential
    assert max(engine.batches[before:]) > 1  # at least one real batch formed


def test_streaming_pieces_arrive_before_the_answer_is_done(served) -> None:
    """Live streaming: the engine hands out text while decoding; the pieces add up to the final answer."""
    from tunesmith.models.generate import GenerationSettings
    from tunesmith.serve.chat import resolve_model

    app, _, _, job = served
    ref = resolve_model(app, job.fine_tuned_model)
    for stop in ((), ("um",)):
        pieces: list[tuple[str, bool]] = []
        holder: dict = {"fut": None}

        def on_text(d: str, pieces=pieces, holder=holder) -> None:
            pieces.append((d, holder["fut"] is not None and holder["fut"].done()))

        fut = app.state.engine.submit(
            ref, PROMPT, GenerationSettings(max_tokens=12, stop=stop), on_text=on_text
        )
        holder["fut"] = fut
        gen = fut.result()
        assert gen.text.startswith(
            "".join(p for p, _ in pieces)
        )  # never more than, or other than, the answer
        assert pieces and not pieces[0][1]  # the first piece came while the answer was still being decoded


def test_lru_budget_unloads_and_reloads_adapters(served) -> None:
    from tunesmith.models.generate import GenerationSettings
    from tunesmith.serve.chat import resolve_model
    from tunesmith.serve.engine import Engine

    app, client, _, job = served
    a = resolve_model(app, job.fine_tuned_model)
    b = resolve_model(app, f"{job.fine_tuned_model}:ckpt-step-4")
    engine = Engine(budget_bytes=1)  # room for nothing but the model in use
    s = GenerationSettings(max_tokens=4)
    first = [engine.submit(ref, PROMPT, s).result().text for ref in (a, b, a)]
    assert engine.loads >= 4  # base + a, then b evicts a, then a again
    assert len(engine.loaded()) <= 2
    roomy = Engine()
    again = [roomy.submit(ref, PROMPT, s).result().text for ref in (a, b, a)]
    assert roomy.loads == 3 and again == first  # base once, each adapter once, same answers
    engine.close()
    roomy.close()


def test_embeddings_from_the_embedded_minilm(served) -> None:
    app, client, _, _ = served
    texts = ["refund my order", "I want my money back", "the sky is blue"]
    # strict mode validates before the SDK decodes its default base64, so ask for floats there
    res = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    vecs = [d.embedding for d in res.data]
    assert len(vecs) == 3 and len(vecs[0]) == 384 and res.usage.prompt_tokens > 0

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])  # paraphrases are closer than an unrelated sentence
    lenient = in_process_client(
        app, strict=False
    )  # the SDK's default: base64 on the wire, decoded by the SDK
    b64 = lenient.embeddings.create(model="minilm", input=texts[0]).data[0].embedding
    assert max(abs(x - y) for x, y in zip(b64, vecs[0], strict=True)) < 1e-6
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")


def test_dpo_job_end_to_end(served) -> None:
    import json
    import math

    app, client, _, _ = served
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"say {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"The number is {i}."}],
            "non_preferred_output": [{"role": "assistant", "content": "No."}],
        }
        for i in range(12)
    ]
    f = client.files.create(
        file=("pref.jsonl", "\n".join(json.dumps(r) for r in rows).encode()), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=f.id,
        suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
    )
    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
        240,
        "the DPO job",
    )
    assert done.status == "succeeded", done.error
    assert done.method.type == "dpo" and done.method.dpo.hyperparameters.beta == 0.2
    losses = [m for m in app.state.store.metrics_series(job.id) if "train_loss" in m]
    assert (
        losses and abs(losses[0]["train_loss"] - math.log(2)) < 0.01
    )  # policy == reference at step 1: loss = ln 2
    r = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "say 3"}],
        temperature=0,
        max_tokens=6,
    )
    assert r.model == done.fine_tuned_model and r.usage.completion_tokens >= 1


def test_delete_the_fine_tuned_model_last(served) -> None:
    _, client, _, job = served
    assert client.models.delete(job.fine_tuned_model).deleted is True
    ids = [m.id for m in client.models.list()]
    assert job.fine_tuned_model not in ids and not any(i.startswith(job.fine_tuned_model) for i in ids)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=job.fine_tuned_model, messages=PROMPT, max_tokens=4)
