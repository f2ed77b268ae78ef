"""Hostile and careless request bodies: strict types (no coercion), finite bounded numbers, OpenAI's id
rules, unparsable JSON, prompts over the model's context, template errors before a stream starts. All answered
with a 400 in OpenAI's shape naming the field. Cases: bigint-json-500, job-infinite-lr-succeeds (server
validation), long-prompt-blocks-engine (context check). Generation is scripted: these are about what reaches
the engine (nothing, for a bad request)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx2
import pytest
from fastapi.routing import APIRoute
from serve_unit_toy import ScriptedEngine, chat_lines, make_app

from tunesmith.serve.testing import SyncASGITransport, in_process_client

pytestmark = pytest.mark.unit

HUGE = "9" * 5000
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def app(tmp_path: Path):
    app = make_app(tmp_path)
    app.state.engine = ScriptedEngine()
    return app


def raw(app) -> httpx2.Client:
    return httpx2.Client(transport=SyncASGITransport(app), base_url="http://t")


def error(resp: httpx2.Response, status: int = 400) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in resp.text
    return err


def _json_post_routes(app) -> list[str]:
    """Every POST route without path parameters except the multipart upload: the routes with JSON bodies."""
    return sorted(
        r.path
        for r in app.routes
        if isinstance(r, APIRoute) and "POST" in r.methods and "{" not in r.path and r.path != "/v1/files"
    )


def test_every_json_body_with_a_huge_integer_or_a_non_json_number_is_400_invalid_json(app) -> None:
    # case bigint-json-500: a > 4,300-digit integer anywhere (even an unknown field) was a 500
    routes = _json_post_routes(app)
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/fine_tuning/jobs"} <= set(routes)
    c = raw(app)
    bodies = [
        '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "seed": ' + HUGE + "}",
        '{"model": "tiny", "unknown_field": ' + HUGE + "}",
        '{"model": "tiny", "temperature": NaN}',
        '{"model": "tiny", "temperature": -Infinity}',
        '{"model": "tiny", "x": "\\ud800"}',  # an unpaired surrogate cannot reach a tokenizer
        '{"model": "tiny", "x": "' + "a" * 10 + '"' + ", " * 3 + "}",
    ]
    for route in routes:
        for body in bodies:
            err = error(c.post(route, content=body.encode(), headers={"content-type": "application/json"}))
            assert err["code"] == "invalid_json", (route, body[:60], err)
    assert app.state.engine.calls == []


def test_no_coercion_of_strings_or_bools_into_numbers(app) -> None:
    c = raw(app)
    cases = [
        ({**CHAT, "max_tokens": "10"}, "max_tokens"),
        ({**CHAT, "max_tokens": 10.0}, "max_tokens"),
        ({**CHAT, "max_tokens": True}, "max_tokens"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "stream": 1}, "stream"),
        ({**CHAT, "temperature": "0.5"}, "temperature"),
        ({**CHAT, "seed": "1"}, "seed"),
        ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": "minilm", "input": [1, 2, 3]}, "input"),
    ]
    for body, param in cases:
        route = "/v1/embeddings" if body["model"] == "minilm" else "/v1/chat/completions"
        err = error(c.post(route, json=body))
        assert err["param"] == param, (body, err)
        assert "not converted" in err["message"] or "valid" in err["message"], err
    assert app.state.engine.calls == []


def test_numbers_are_bounded_and_finite(app) -> None:
    c = raw(app)
    for body, param in [
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "max_tokens": 10**9}, "max_tokens"),
        ({**CHAT, "temperature": 1e999}, "temperature"),  # 1e999 parses to inf
        ({**CHAT, "top_p": 0}, "top_p"),
        ({**CHAT, "seed": 2**70}, "seed"),
        ({"model": "minilm", "input": "x", "dimensions": 10**12}, "dimensions"),
    ]:
        payload = json.dumps(body).replace("Infinity", "1e999")
        route = "/v1/embeddings" if body["model"] == "minilm" else "/v1/chat/completions"
        err = error(c.post(route, content=payload.encode(), headers={"content-type": "application/json"}))
        assert err["param"] == param, (body, err)


def _job(c, **kw) -> httpx2.Response:
    return c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": "file-abc", **kw})


def test_job_hyperparameters_are_strict_finite_and_bounded(app) -> None:
    # case job-infinite-lr-succeeds: 1e999 / Infinity / 1e300 were accepted and the job trained on NaN
    c = raw(app)
    fid = in_process_client(app).files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune").id
    for lr in ("1e999", "Infinity", "1e300", "-1", "0"):
        hyper = '{"learning_rate_multiplier": ' + lr + "}"
        body = '{"model": "tiny", "training_file": "' + fid + '", "hyperparameters": ' + hyper + "}"
        r = c.post(
            "/v1/fine_tuning/jobs", content=body.encode(), headers={"content-type": "application/json"}
        )
        err = error(r)
        assert (err["param"] or "").endswith("learning_rate_multiplier") or err["code"] == "invalid_json", err
        if lr in ("1e300", "-1", "0"):
            assert "finite number > 0" in err["message"], err
    for hyper, name in [
        ({"n_epochs": True}, "n_epochs"),
        ({"n_epochs": "3"}, "n_epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": 10**6}, "batch_size"),
    ]:
        err = error(_job(c, training_file=fid, hyperparameters=hyper))
        assert err["param"].endswith(name), (hyper, err)
    assert c.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing was queued


@pytest.mark.parametrize("suffix", ["a:b", "x\x00y", "../../etc", "a/b", "", "s" * 65, "ünï", "a b"])
def test_job_suffix_follows_openai_id_rules(app, suffix: str) -> None:
    err = error(_job(raw(app), suffix=suffix))
    assert err["param"] == "suffix", err


@pytest.mark.parametrize("fid", ["../x", "file-a/../../b", "file-\x00", "f" * 65])
def test_file_ids_in_job_bodies_follow_id_rules(app, fid: str) -> None:
    err = error(_job(raw(app), training_file=fid))
    assert err["param"] == "training_file", err


def test_a_prompt_over_the_context_is_400_context_length_exceeded_at_once(app) -> None:
    # case long-prompt-blocks-engine: a 1 MB prompt went to the engine and held it for minutes
    c = raw(app)
    big = {"model": "tiny", "messages": [{"role": "user", "content": "word " * 200_000}], "max_tokens": 4}
    err = error(c.post("/v1/chat/completions", json=big))
    assert err["code"] == "context_length_exceeded" and err["param"] == "messages"
    assert "maximum context length is 2048 tokens" in err["message"]
    many = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}] * 5000, "max_tokens": 4}
    assert error(c.post("/v1/chat/completions", json=many))["code"] == "context_length_exceeded"
    stream = {**big, "stream": True}
    assert error(c.post("/v1/chat/completions", json=stream))["code"] == "context_length_exceeded"
    assert app.state.engine.calls == []  # the engine never saw them


def test_max_tokens_defaults_to_and_is_capped_by_what_fits(app) -> None:
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.models.load import load_tokenizer

    c = raw(app)
    text = "hello there " * 300
    n = len(prompt_ids(load_tokenizer("tiny"), [{"role": "user", "content": text}]))
    assert 1000 < n < 2048 - 256
    ok = c.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": text}]}
    )
    assert ok.status_code == 200, ok.text
    assert app.state.engine.calls[-1][2].max_tokens == 256  # the default fits
    longer = "hello there " * 375
    ok = c.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": longer}]}
    )
    assert ok.status_code == 200, ok.text
    m = app.state.engine.extras[-1]["prompt"]
    assert app.state.engine.calls[-1][2].max_tokens == 2048 - len(m) < 256  # what fits, no more
    over = c.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": longer}], "max_tokens": 300},
    )
    err = error(over)
    assert (
        err["code"] == "context_length_exceeded"
        and f"{len(m)} in the messages, 300 in the completion" in err["message"]
    )


def test_the_server_cap_on_context_applies(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_context_tokens=64)
    app.state.engine = ScriptedEngine()
    err = error(raw(app).post("/v1/chat/completions", json={**CHAT, "max_tokens": 60}))
    assert (
        err["code"] == "context_length_exceeded" and "maximum context length is 64 tokens" in err["message"]
    )


def test_template_errors_are_400_before_a_stream_starts(tmp_path: Path) -> None:
    from tunesmith.models.load import resolve_model_dir

    strict = tmp_path / "tiny-strict"
    shutil.copytree(resolve_model_dir("tiny"), strict)
    (strict / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
        "{{ raise_exception('role ' + m['role'] + ' is not supported by this template') }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    app = make_app(tmp_path, extra_base_models=[str(strict)])
    app.state.engine = ScriptedEngine()
    body = {
        "model": str(strict),
        "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}],
        "stream": True,
    }
    err = error(raw(app).post("/v1/chat/completions", json=body))
    assert err["param"] == "messages" and err["code"] == "invalid_prompt"
    assert "role tool is not supported" in err["message"]
    assert app.state.engine.calls == []


def test_the_engine_gets_the_checked_prompt_a_cancel_event_and_a_budget(app) -> None:
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.models.load import load_tokenizer

    r = raw(app).post("/v1/chat/completions", json={**CHAT, "max_tokens": 5})
    assert r.status_code == 200, r.text
    extra = app.state.engine.extras[-1]
    assert extra["prompt"] == prompt_ids(load_tokenizer("tiny"), [{"role": "user", "content": "hi"}])
    assert extra["budget_s"] == app.state.settings.request_budget_s > 0
    assert extra["cancel"].is_set() is False  # answered normally: nothing was cancelled


def test_a_client_that_goes_away_cancels_its_request() -> None:
    """``until_disconnect`` sets the engine's cancel event when the ASGI server reports http.disconnect."""
    import asyncio
    import threading

    from tunesmith.serve.errors import APIError
    from tunesmith.serve.prompts import until_disconnect

    async def scenario() -> tuple[threading.Event, int]:
        gone = asyncio.Event()

        class Req:
            async def receive(self) -> dict:
                await gone.wait()
                return {"type": "http.disconnect"}

        cancel = threading.Event()
        never = asyncio.get_running_loop().create_future()  # a generation that would run for minutes
        task = asyncio.ensure_future(until_disconnect(Req(), never, cancel))
        await asyncio.sleep(0)
        assert not cancel.is_set()
        gone.set()
        try:
            await task
        except APIError as exc:
            return cancel, exc.status
        return cancel, 200

    cancel, status = asyncio.run(scenario())
    assert cancel.is_set() and status == 499


class _HangingEngine:
    """Never answers on its own; records each request's cancel event and fails the request once it is set
    (what the real engine does at its next chunk or decode step)."""

    def __init__(self) -> None:
        self.cancels: list = []
        self.arrived = None  # an asyncio.Event of the test's loop (submit runs on that loop)

    def submit(self, ref, messages, settings, on_text=None, **kw):  # noqa: ANN001, ANN003, ANN201
        from concurrent.futures import Future

        from tunesmith.serve.engine import Cancelled

        fut: Future = Future()
        cancel = kw["cancel"]
        self.cancels.append(cancel)
        self.arrived.set()

        def watch() -> None:
            cancel.wait(30)
            if fut.set_running_or_notify_cancel():  # False: the route already gave up on it
                fut.set_exception(Cancelled("cancelled"))

        import threading

        threading.Thread(target=watch, daemon=True).start()
        return fut

    def close(self) -> None:
        pass


@pytest.mark.parametrize("stream", [False, True])
def test_a_disconnected_client_cancels_its_generation_through_the_asgi_app(
    tmp_path: Path, stream: bool
) -> None:
    """Raw ASGI: the body arrives, then the server reports http.disconnect; the request's cancel event is set
    (non-streamed: the route's watch; streamed: the closed SSE generator)."""
    import asyncio

    app = make_app(tmp_path)
    engine = _HangingEngine()
    app.state.engine = engine
    body = json.dumps({**CHAT, "max_tokens": 5, "stream": stream}).encode()

    async def scenario() -> None:
        engine.arrived = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            if messages:
                return messages.pop(0)
            await engine.arrived.wait()  # the client hangs up once its request is with the engine
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            pass

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("t", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=30)

    asyncio.run(scenario())
    assert len(engine.cancels) == 1 and engine.cancels[0].is_set()
