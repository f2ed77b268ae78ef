"""The HTTP layer through the real openai SDK in strict response-validation mode (in process, no port):
error shapes, files, job bookkeeping, auth, CORS, limits, model routing. Generation is scripted here; the
real generation and training path is covered in tests/integration/serve."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx2
import openai
import pytest
from pydantic import BaseModel
from serve_unit_toy import ScriptedEngine, chat_lines, dpo_lines, make_app

from tunesmith.serve.testing import SyncASGITransport, in_process_client

pytestmark = pytest.mark.unit


@pytest.fixture
def app(tmp_path: Path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return in_process_client(app)


def raw(app) -> httpx2.Client:
    return httpx2.Client(transport=SyncASGITransport(app), base_url="http://t")


def assert_openai_error(resp: httpx2.Response, status: int, param: str | None = "any") -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in resp.text and "detail" not in body
    if param != "any":
        assert err["param"] == param, err
    return err


def test_errors_have_openai_shape_never_422(app) -> None:
    c = raw(app)
    assert_openai_error(c.get("/v1/nope"), 404)
    assert_openai_error(c.post("/v1/chat/completions", content=b"{not json"), 400)
    assert_openai_error(c.post("/v1/chat/completions", json=[1, 2]), 400)
    assert_openai_error(
        c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}), 400, "model"
    )
    err = assert_openai_error(
        c.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": 123}]}), 400
    )
    assert err["param"].startswith("messages.0.role")
    assert_openai_error(
        c.post("/v1/fine_tuning/jobs", json={"model": "tiny", "training_file": "file-x", "seed": -1}),
        400,
        "seed",
    )
    assert_openai_error(c.get("/v1/files?limit=abc"), 400, "query.limit")
    assert_openai_error(c.delete("/v1/files"), 405)


def test_files_roundtrip_pagination_and_delete(client, app) -> None:
    data = chat_lines(12)
    ids = [client.files.create(file=(f"t{i}.jsonl", data), purpose="fine-tune").id for i in range(3)]
    other = client.files.create(file=("notes.jsonl", b'{"a": 1}\n'), purpose="user_data")
    assert client.files.retrieve(ids[0]).status == "processed"
    assert client.files.content(ids[1]).read() == data
    listed = [f.id for f in client.files.list(limit=1)]  # the SDK follows the cursor page by page
    assert listed == [other.id, *reversed(ids)]
    assert [f.id for f in client.files.list(purpose="fine-tune")] == list(reversed(ids))
    assert client.files.delete(ids[0]).deleted is True
    with pytest.raises(openai.NotFoundError) as exc:
        client.files.retrieve(ids[0])
    assert exc.value.param == "id"


def test_invalid_training_file_is_error_with_the_checkers_message(client) -> None:
    bad = chat_lines(11) + b'{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n'
    f = client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    assert f.status == "error"
    assert "line 12" in f.status_details and "line 13" in f.status_details and "assistant" in f.status_details
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="tiny", training_file=f.id)
    assert exc.value.param == "training_file" and exc.value.code == "invalid_training_file"


def test_upload_limit_is_413(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_upload_bytes=1000)
    client = in_process_client(app)
    with pytest.raises(openai.APIStatusError) as exc:
        client.files.create(file=("big.jsonl", chat_lines(60)), purpose="fine-tune")
    assert exc.value.status_code == 413
    assert list((tmp_path / "data" / "files").iterdir()) == []


def test_file_ids_never_reach_outside_the_data_folder(app, tmp_path: Path) -> None:
    secret = tmp_path / "data" / "secret.jsonl"
    secret.write_text("top secret")
    c = raw(app)
    for fid in (
        "..%2Fsecret",
        "file-..%2F..%2Fsecret",
        "%2E%2E%2Fsecret",
        "file-abc%00",
        "file-/etc/passwd",
        "../tunesmith.db",
    ):
        resp = c.get(f"/v1/files/{fid}/content")
        assert resp.status_code == 404 and b"top secret" not in resp.content, (fid, resp.text)
    from tunesmith.serve.jobs import file_path

    for bad in ("file-../x", "file-a/b", "../file-x", "file-ab c", "file-é"):
        with pytest.raises(ValueError):
            file_path(tmp_path, bad)


def test_job_create_validates_synchronously(client) -> None:
    f = client.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune")
    cases = [
        (dict(model="tiny", training_file="file-doesnotexist"), "training_file"),
        (dict(model="no-such-model", training_file=f.id), "model"),
        # reinforcement needs a grader (tests/integration/serve/test_serve_reinforcement.py trains one)
        (dict(model="tiny", training_file=f.id, method={"type": "reinforcement"}), "method.reinforcement.grader"),
        (
            dict(
                model="tiny",
                training_file=f.id,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
            ),
            "method.supervised.hyperparameters.n_epochs",
        ),
        (
            dict(
                model="tiny",
                training_file=f.id,
                method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 5}}},
            ),
            "method.dpo.hyperparameters.beta",
        ),
        (
            dict(model="tiny", training_file=f.id, method={"type": "dpo"}),
            "training_file",
        ),  # chat data for dpo
        (dict(model="tiny", training_file=f.id, suffix=""), "suffix"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as exc:
            client.fine_tuning.jobs.create(**kwargs)
        assert exc.value.param == param, (kwargs, exc.value.body)
    d = client.files.create(file=("p.jsonl", dpo_lines(12)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=d.id, method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2


def test_job_listing_cancel_pause_resume(client, app) -> None:
    f = client.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune")
    jobs = [
        client.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=i, metadata={"n": str(i)})
        for i in range(3)
    ]
    assert all(j.status == "queued" and j.error is None and j.seed == i for i, j in enumerate(jobs))
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [j.id for j in reversed(jobs)]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"n": "1"})] == [jobs[1].id]
    first = client.fine_tuning.jobs.cancel(jobs[0].id)
    assert first.status == "cancelled" and first.finished_at
    again = client.fine_tuning.jobs.cancel(jobs[0].id)  # idempotent, no retry needed
    assert again.status == "cancelled" and again.finished_at == first.finished_at
    lenient = in_process_client(app, strict=False)  # "paused" is outside the SDK's status Literal
    assert lenient.fine_tuning.jobs.pause(jobs[1].id).status == "paused"
    assert lenient.fine_tuning.jobs.resume(jobs[1].id).status == "queued"
    app.state.store.update_job(jobs[2].id, status="succeeded")
    c = raw(app)
    resp = c.post(f"/v1/fine_tuning/jobs/{jobs[2].id}/cancel")
    assert_openai_error(resp, 400, "fine_tuning_job_id")  # never 409: the SDK would retry it
    assert_openai_error(c.post(f"/v1/fine_tuning/jobs/{jobs[2].id}/resume"), 400)
    events = client.fine_tuning.jobs.list_events(jobs[0].id)
    msgs = [e.message for e in events]
    assert msgs[0] == "Job cancelled" and msgs[-1].startswith("Created fine-tuning job")
    older = client.fine_tuning.jobs.list_events(jobs[0].id, after=events.data[0].id)
    assert [e.id for e in older.data] == [e.id for e in events.data[1:]]


def test_too_few_examples_fail_the_job_with_invalid_n_examples(client, app, tmp_path: Path) -> None:
    from tunesmith.serve.jobs import run_job

    f = client.files.create(file=("nine.jsonl", chat_lines(9)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=f.id)
    claimed = app.state.store.claim_job(pid=1)
    run_job(app.state.store, claimed, tmp_path / "data", [], threading.Event())
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed" and failed.error.code == "invalid_n_examples"
    assert "9 example(s)" in failed.error.message and failed.error.param == "training_file"


def test_auth_keys_and_open_dashboard(tmp_path: Path) -> None:
    app = make_app(tmp_path, api_keys=["k-one", "k-two"])
    with pytest.raises(openai.AuthenticationError):
        in_process_client(app, api_key="wrong").models.list()
    assert_openai_error(raw(app).get("/v1/models"), 401)
    assert in_process_client(app, api_key="k-two").models.list().data
    assert raw(app).get("/").status_code == 200  # the page holds no data; its API calls need the key


def test_cors_off_by_default(tmp_path: Path) -> None:
    pre = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    off = raw(make_app(tmp_path / "a")).options("/v1/models", headers=pre)
    assert "access-control-allow-origin" not in off.headers
    on = raw(make_app(tmp_path / "b", cors_origins=["http://ok.example"])).options(
        "/v1/models", headers={**pre, "Origin": "http://ok.example"}
    )
    assert on.headers.get("access-control-allow-origin") == "http://ok.example"


def test_models_routing_and_delete(client, app) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"tiny", "smollm2-135m-instruct", "minilm"} <= set(ids)
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve(
            "Org/Some-Model"
        )  # a '/' id reaches the route ({model:path}) and is a clean 404
    assert exc.value.code == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete("tiny")
    with pytest.raises(openai.NotFoundError):
        client.models.delete("ft:tiny:local::nothing")


def test_chat_shapes_with_scripted_engine(client, app) -> None:
    engine = app.state.engine = ScriptedEngine(["Hello there, friend."])
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0,
        max_tokens=5,
        stop=["\n"],
        seed=3,
        top_p=0.5,
    )
    assert r.choices[0].message.content == "Hello there, friend." and r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens == 10
    settings = engine.calls[-1][2]
    assert (settings.max_tokens, settings.temperature, settings.top_p, settings.stop, settings.seed) == (
        5,
        0,
        0.5,
        ("\n",),
        3,
    )
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there, friend."
    assert (
        chunks[-2].choices[0].finish_reason == "stop"
        and chunks[-1].choices == []
        and chunks[-1].usage.total_tokens == 10
    )
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(
            model="ft:tiny:local::missing", messages=[{"role": "user", "content": "hi"}]
        )
    assert exc.value.code == "model_not_found"


def test_json_response_format_validate_and_retry(client, app) -> None:
    class Answer(BaseModel):
        label: str
        score: int

    engine = app.state.engine = ScriptedEngine(["sure! label=a", '{"label": "a", "score": 2}'])
    parsed = client.chat.completions.parse(
        model="tiny", messages=[{"role": "user", "content": "rate"}], response_format=Answer
    )
    assert parsed.choices[0].message.parsed == Answer(label="a", score=2)
    assert len(engine.calls) == 2 and "JSON schema" in engine.calls[0][1][0]["content"]
    app.state.engine = ScriptedEngine(['{"label": "a"}'])  # valid JSON, wrong schema, every time
    c = raw(app)
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "A", "schema": Answer.model_json_schema()},
        },
    }
    err = assert_openai_error(c.post("/v1/chat/completions", json=body), 500)
    assert err["code"] == "invalid_json_output"
    app.state.engine = ScriptedEngine(['{"ok": true}'])
    ok = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
    )
    assert json.loads(ok.choices[0].message.content) == {"ok": True}
    missing = {**body, "response_format": {"type": "json_schema", "json_schema": {"name": "A"}}}
    assert_openai_error(
        c.post("/v1/chat/completions", json=missing), 400, "response_format.json_schema.schema"
    )
    bad_schema = {
        **body,
        "response_format": {"type": "json_schema", "json_schema": {"name": "A", "schema": {"type": 5}}},
    }
    assert_openai_error(
        c.post("/v1/chat/completions", json=bad_schema), 400, "response_format.json_schema.schema"
    )


def test_request_logging_export_and_stats(tmp_path: Path) -> None:
    from tunesmith.data.formats import load_data
    from tunesmith.serve.monitor import export_logs, log_stats

    app = make_app(tmp_path, log_requests=True)
    app.state.engine = ScriptedEngine(["four"])
    client = in_process_client(app)
    for q in ("2+2?", "3+1?"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": q}])
    store = app.state.store
    logs = store.request_logs()
    assert [json.loads(r["messages"])[0]["content"] for r in logs] == ["2+2?", "3+1?"]
    assert store.correct_log(logs[1]["id"], "4")
    out = tmp_path / "export.jsonl"
    assert export_logs(store, out) == 2
    loaded = load_data(out, "chat")
    assert not loaded.errors and [r.data["messages"][-1]["content"] for r in loaded.records] == ["four", "4"]
    assert export_logs(store, out, corrected_only=True) == 1
    assert log_stats(store)[0]["requests"] == 2
    live = raw(app).get("/v1/tunesmith/stats").json()["data"]
    assert live[0]["model"] == "tiny" and live[0]["requests"] == 2 and live[0]["p95_ms"] >= 0
    quiet = make_app(tmp_path / "q")  # logging is opt-in
    quiet.state.engine = ScriptedEngine(["x"])
    in_process_client(quiet).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}]
    )
    assert quiet.state.store.request_logs() == []


def test_store_migrations_and_atomic_claim(tmp_path: Path) -> None:
    import sqlite3

    from tunesmith.errors import TunesmithError
    from tunesmith.serve.store import MIGRATIONS, Store

    db = tmp_path / "s.db"
    store = Store(db)
    assert store.schema_version() == len(MIGRATIONS)
    Store(db)  # re-opening migrates nothing and loses nothing
    for i in range(5):
        store.add_job(
            {
                "id": f"ftjob-{i}",
                "created_at": 0,
                "model": "tiny",
                "training_file": "f",
                "status": "queued",
                "method": "{}",
                "hyperparameters": "{}",
                "seed": 0,
            },
            "created",
        )
    claimed: list = []
    threads = [threading.Thread(target=lambda p=p: claimed.append(store.claim_job(p))) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [c["id"] for c in claimed if c]
    assert sorted(got) == [f"ftjob-{i}" for i in range(5)] and len(got) == len(set(got))  # each job once
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(TunesmithError, match="newer tunesmith"):
        Store(db)
