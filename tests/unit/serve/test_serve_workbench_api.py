"""The workbench's API without a model: alias moves through the gate (refused, overridden, rolled back step by step,
audited with the key's id), the chat endpoint resolving an alias, and the review loop on logged rows (PII masked
and flagged, corrections and pairs versioned, exports in the training formats, filters)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx2
import pytest
from serve_unit_toy import make_app

from tunesmith.data.formats import load_data
from tunesmith.serve.testing import SyncASGITransport

pytestmark = pytest.mark.unit
KEY = "wb-unit-key"


@pytest.fixture
def client(tmp_path: Path):
    app = make_app(tmp_path, api_keys=[KEY])
    c = httpx2.Client(
        transport=SyncASGITransport(app), base_url="http://t", headers={"Authorization": f"Bearer {KEY}"}
    )
    return app, c


def test_alias_moves_need_the_gate_or_a_recorded_override_and_roll_back_step_by_step(client) -> None:
    app, c = client
    refused = c.post("/v1/tunesmith/aliases/prod", json={"model": "tiny"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "gate_not_passed"
    assert c.get("/v1/tunesmith/aliases").json()["data"] == []  # nothing moved
    for model in ("tiny", "smollm2-135m-instruct"):
        ok = c.post("/v1/tunesmith/aliases/prod", json={"model": model, "override_reason": f"try {model}"})
        assert ok.status_code == 200, ok.text
    assert (
        c.post("/v1/tunesmith/aliases/prod", json={"model": "nope", "override_reason": "x"}).status_code
        == 404
    )
    assert (
        c.post("/v1/tunesmith/aliases/tiny", json={"model": "tiny", "override_reason": "x"}).status_code
        == 400
    )
    history = c.get("/v1/tunesmith/aliases/prod/history").json()["data"]
    who = "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert [(e["action"], e["model"], e["previous"], e["actor"]) for e in history] == [
        ("set", "smollm2-135m-instruct", "tiny", who),
        ("set", "tiny", None, who),
    ]
    assert history[0]["override_reason"] == "try smollm2-135m-instruct" and history[0]["gate_passed"] is None
    back = c.post("/v1/tunesmith/aliases/prod/rollback").json()
    assert back["model"] == "tiny"
    again = c.post("/v1/tunesmith/aliases/prod/rollback")  # nothing before the first model
    assert again.status_code == 400 and again.json()["error"]["code"] == "nothing_to_roll_back"
    from tunesmith.serve.chat import resolve_model

    assert resolve_model(app, "prod").base == "tiny"  # the chat endpoint's model lookup resolves the alias
    missing = c.post("/v1/tunesmith/evaluations", json={"job_id": "ftjob-nope", "holdout_file": "file-x"})
    assert missing.status_code == 404


def test_review_masks_pii_versions_rows_and_exports_training_formats(client) -> None:
    app, c = client
    store, now = app.state.store, time.time()
    for i, (text, answer) in enumerate(
        [("refund to card 4111 1111 1111 1111 please", "billing"), ("the app crashes", "account")]
    ):
        store.log_request(
            {
                "created_at": now + i, "model": "prod", "messages": json.dumps([{"role": "user", "content": text}]),
                "response": answer, "latency_ms": 5.0, "prompt_tokens": 5, "completion_tokens": 1, "status": 200,
                "stream": 0,
            }
        )  # fmt: skip
    logs = c.get("/v1/tunesmith/review/logs").json()["data"]
    assert [r["id"] for r in logs] == [2, 1]  # newest first
    assert logs[1]["messages"][0]["content"] == "refund to card [CARD] please" and logs[1]["pii"] == ["card"]
    assert "4111" not in json.dumps(logs)
    assert (
        c.post("/v1/tunesmith/review/logs/2/scores", json={"name": "grader:exact", "value": 0.0}).status_code
        == 200
    )
    low = c.get("/v1/tunesmith/review/logs", params={"grader": "exact", "max_score": 0.5}).json()["data"]
    assert [r["id"] for r in low] == [2]
    assert c.get("/v1/tunesmith/review/logs", params={"since": now + 0.5}).json()["data"][0]["id"] == 2
    first = c.post("/v1/tunesmith/review/logs/2/correct", json={"answer": "tech"}).json()
    second = c.post("/v1/tunesmith/review/logs/2/correct", json={"answer": "technical"}).json()
    assert second["seq"] > first["seq"]
    c.post("/v1/tunesmith/review/logs/1/correct", json={"answer": "billing"})
    pair = c.post("/v1/tunesmith/review/logs/1/prefer", json={"chosen": "billing", "rejected": "account"})
    assert pair.status_code == 200 and "4111" not in pair.text and pair.json()["pii"] == ["card"]
    assert (
        c.post("/v1/tunesmith/review/logs/1/prefer", json={"chosen": "a", "rejected": "a"}).status_code == 400
    )
    assert c.get("/v1/tunesmith/review/logs", params={"reviewed": "no"}).json()["data"] == []
    sft = c.get("/v1/tunesmith/review/export", params={"kind": "sft"}).text.splitlines()
    assert [json.loads(x)["messages"][-1]["content"] for x in sft] == [
        "technical",
        "billing",
    ]  # newest version
    old = c.get("/v1/tunesmith/review/export", params={"kind": "sft", "upto": first["seq"]}).text.splitlines()
    assert [json.loads(x)["messages"][-1]["content"] for x in old] == ["tech"]  # the set as it stood then
    assert "[CARD]" in sft[1] and "4111" in c.get("/v1/tunesmith/review/export?kind=sft&pii=keep").text
    dpo = c.get("/v1/tunesmith/review/export", params={"kind": "dpo"}).text
    for kind, text in (("chat", "\n".join(sft)), ("preference", dpo)):
        path = Path(app.state.settings.data_dir) / f"{kind}.jsonl"
        path.write_text(text + "\n")
        loaded = load_data(path)
        assert loaded.task == kind and not loaded.errors  # the data checker reads them as training data
    assert store.request_logs()[1]["corrected"] == "technical"  # `tunesmith logs export` sees corrections too
