"""Fuzzing every endpoint with hypothesis: random and mutated paths, queries and bodies never produce a
5xx or a traceback, and every error body has OpenAI's shape. Generation is scripted (this is about the
HTTP layer); embeddings use the real embedded MiniLM.

The one 5xx the server may send on purpose, ``invalid_json_output`` (the model could not produce JSON
matching a requested ``json_schema`` after its retries), is asserted to appear only for such requests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_unit_toy import ScriptedEngine, chat_lines, make_app

from tunesmith.serve.testing import SyncASGITransport

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
segments = st.text(max_size=30) | st.sampled_from(
    ["..", "../..", "%2e%2e", "file-", "ftjob-", "ft:tiny:x::y", "a/b", "\x00", "tiny"]
)

VALID = {
    "/v1/chat/completions": {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0,
        "top_p": 1,
        "stop": ["x"],
        "seed": 1,
        "stream": False,
        "n": 1,
        "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
    },
    "/v1/embeddings": {"model": "minilm", "input": ["hello"], "encoding_format": "float"},
    "/v1/fine_tuning/jobs": {
        "model": "tiny",
        "training_file": "FILE",
        "suffix": "s",
        "seed": 1,
        "metadata": {"a": "b"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    },
}
POST_PATHS = [
    "/v1/fine_tuning/jobs/{id}/cancel",
    "/v1/fine_tuning/jobs/{id}/pause",
    "/v1/fine_tuning/jobs/{id}/resume",
]
GET_PATHS = [
    "/v1/files",
    "/v1/files/{id}",
    "/v1/files/{id}/content",
    "/v1/fine_tuning/jobs",
    "/v1/fine_tuning/jobs/{id}",
    "/v1/fine_tuning/jobs/{id}/events",
    "/v1/fine_tuning/jobs/{id}/checkpoints",
    "/v1/models",
    "/v1/models/{id}",
    "/v1/tunesmith/stats",
    "/v1/tunesmith/jobs/{id}/metrics",
    "/v1/tunesmith/reports",
    "/",
]
DELETE_PATHS = ["/v1/files/{id}", "/v1/models/{id}"]


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    app = make_app(Path(tmp_path_factory.mktemp("fuzz")))
    app.state.engine = ScriptedEngine(["{}"])
    c = httpx2.Client(transport=SyncASGITransport(app), base_url="http://t")
    fid = c.post(
        "/v1/files", files={"file": ("t.jsonl", chat_lines(12))}, data={"purpose": "fine-tune"}
    ).json()["id"]
    jid = c.post("/v1/fine_tuning/jobs", json={**VALID["/v1/fine_tuning/jobs"], "training_file": fid}).json()[
        "id"
    ]
    return c, {"file": fid, "job": jid}


def check(resp: httpx2.Response, asked_schema: bool = False) -> None:
    assert "Traceback" not in resp.text and 'File "/' not in resp.text
    if resp.status_code >= 500:
        assert asked_schema and resp.json()["error"]["code"] == "invalid_json_output", resp.text
    if resp.status_code >= 400:
        body = resp.json()
        assert set(body) == {"error"} and {"message", "type", "param", "code"} == set(body["error"]), (
            resp.text
        )
        assert resp.status_code != 422 and resp.status_code != 409


def _ids(draw, env) -> str:
    return draw(st.sampled_from([env["file"], env["job"], "tiny", "minilm"]) | segments)


@FUZZ
@given(data=st.data())
def test_fuzz_paths_and_queries(fuzz_env, data) -> None:
    c, env = fuzz_env
    method, template = data.draw(
        st.sampled_from(
            [("GET", p) for p in GET_PATHS]
            + [("POST", p) for p in POST_PATHS]
            + [("DELETE", p) for p in DELETE_PATHS if "models" in p]
        )
    )
    raw = _ids(data.draw, env)
    seg = (
        quote(raw, safe=":") if data.draw(st.booleans()) else quote(raw, safe=":/.")
    )  # '/' and '..' raw or encoded
    path = template.replace("{id}", seg)
    params = data.draw(
        st.dictionaries(
            st.sampled_from(["limit", "after", "order", "purpose", "metadata[a]", "x"]),
            st.text(max_size=12) | st.integers(-5, 20000).map(str),
            max_size=3,
        )
    )
    check(c.request(method, path, params=params))


@FUZZ
@given(data=st.data())
def test_fuzz_json_bodies(fuzz_env, data) -> None:
    c, env = fuzz_env
    path = data.draw(st.sampled_from(list(VALID)))
    valid = json.loads(json.dumps(VALID[path]).replace("FILE", env["file"]))
    mode = data.draw(st.sampled_from(["mutate", "mutate", "drop", "random", "bytes"]))
    if mode == "mutate":
        key = data.draw(st.sampled_from(sorted(valid)))
        body: object = {**valid, key: data.draw(json_values)}
    elif mode == "drop":
        body = {k: v for k, v in valid.items() if k != data.draw(st.sampled_from(sorted(valid)))}
    elif mode == "random":
        body = data.draw(json_values)
    else:
        resp = c.post(
            path, content=data.draw(st.binary(max_size=64)), headers={"content-type": "application/json"}
        )
        check(resp)
        return
    asked_schema = (
        isinstance(body, dict)
        and isinstance(body.get("response_format"), dict)
        and body["response_format"].get("type") == "json_schema"
    )
    check(c.post(path, json=body), asked_schema)


@FUZZ
@given(
    purpose=st.text(max_size=12) | st.sampled_from(["fine-tune", "user_data"]),
    content=st.binary(max_size=300) | st.just(chat_lines(3)),
    filename=st.text(max_size=40),
)
def test_fuzz_uploads(fuzz_env, purpose, content, filename) -> None:
    c, _ = fuzz_env
    resp = c.post("/v1/files", files={"file": (filename or "x", content)}, data={"purpose": purpose})
    check(resp)
    if resp.status_code == 200:
        f = resp.json()
        assert f["status"] in ("processed", "error") and f["bytes"] == len(content)
        assert c.get(f"/v1/files/{f['id']}/content").content == content
