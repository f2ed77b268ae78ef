"""The server's front door (serve.guard): API keys on every route but the dashboard shell, keys refused when
empty, keys from the environment or a file, and body limits enforced while the body arrives.
Cases: shared/cases/empty-api-key-disables-auth, and the /v1/files part of bigint-json-500."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx2
import openai
import pytest
from fastapi.routing import APIRoute
from serve_unit_toy import chat_lines, make_app
from starlette.routing import Route
from typer.testing import CliRunner

from tunesmith.cli.main import app as cli
from tunesmith.errors import UsageError
from tunesmith.serve.guard import OPEN_PATHS, Guard, authorized, gather_keys, key_digests
from tunesmith.serve.testing import SyncASGITransport, in_process_client

pytestmark = pytest.mark.unit

KEY = "k-" + "s3cret" * 4


def raw(app, headers: dict | None = None) -> httpx2.Client:
    return httpx2.Client(transport=SyncASGITransport(app), base_url="http://t", headers=headers or {})


@pytest.mark.parametrize("keys", [[""], ["   "], ["good-key", ""], ["\t\n"]])
def test_an_empty_or_whitespace_key_is_refused_at_start(tmp_path: Path, keys: list[str]) -> None:
    # case empty-api-key-disables-auth: the in-process reproduction answered 200 without a key
    with pytest.raises(UsageError, match="must not be empty"):
        make_app(tmp_path, api_keys=keys)


def test_serve_with_an_empty_key_exits_2_before_listening(tmp_path: Path) -> None:
    # case empty-api-key-disables-auth: `tunesmith serve --api-key "$UNSET"`
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith", "serve", "--api-key", "", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "must not be empty" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_empty_key_from_the_environment_or_a_file_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    env_run = runner.invoke(cli, ["serve", "--data-dir", str(tmp_path / "d")], env={"TUNESMITH_API_KEY": " "})
    assert env_run.exit_code == 2
    assert "TUNESMITH_API_KEY" in env_run.output
    empty = tmp_path / "keys.txt"
    empty.write_text("# no key yet\n\n")
    file_run = runner.invoke(cli, ["serve", "--api-key-file", str(empty), "--data-dir", str(tmp_path / "d")])
    assert file_run.exit_code == 2 and "holds no key" in file_run.output


def test_keys_from_flags_environment_and_file_all_work(tmp_path: Path) -> None:
    f = tmp_path / "keys.txt"
    f.write_text("# team keys\nkey-from-file\n\n  key-two  \n")
    keys = gather_keys(["key-from-flag"], f, {"TUNESMITH_API_KEY": "key-from-env"})
    assert keys == ["key-from-flag", "key-from-env", "key-from-file", "key-two"]
    app = make_app(tmp_path, api_keys=keys)
    for k in keys:
        assert in_process_client(app, api_key=k).models.list().data
    with pytest.raises(openai.AuthenticationError):
        in_process_client(app, api_key="key-from").models.list()  # a prefix of a key is not the key


def test_anonymous_and_empty_bearer_are_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path, api_keys=[KEY])
    c = raw(app)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer  "}, {"Authorization": KEY}):
        r = c.get("/v1/models", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert c.get("/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_the_comparison_is_over_digests_and_never_matches_an_empty_key() -> None:
    digests = key_digests(["abc"])
    assert authorized("Bearer abc", digests)
    assert not authorized("Bearer ab", digests) and not authorized("Bearer abcd", digests)
    assert not authorized(None, key_digests([""])) and not authorized("Bearer ", key_digests([""]))


def _concrete(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_but_the_dashboard_shell_needs_a_key(tmp_path: Path) -> None:
    """Enumerates the app's routes, so a route added later without thought is caught here."""
    app = make_app(tmp_path, api_keys=[KEY])
    c = raw(app)
    seen = set()
    for route in app.routes:
        if not isinstance(route, APIRoute | Route):
            continue
        for method in sorted(route.methods or {"GET"}):
            path = _concrete(route.path)
            seen.add(route.path)
            anonymous = c.request(method, path)
            if route.path in OPEN_PATHS and method in ("GET", "HEAD"):  # the dashboard/workbench shells
                assert anonymous.status_code == 200, method
                assert "/v1" in anonymous.text or method == "HEAD"  # the shell: no data of its own
                continue
            assert anonymous.status_code == 401, (method, route.path, anonymous.status_code)
            keyed = c.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
            assert keyed.status_code != 401, (method, route.path)
    # the documentation routes are among them (they describe every endpoint)
    assert {"/openapi.json", "/v1/chat/completions", "/v1/files", "/v1/tunesmith/reports"} <= seen
    assert c.get("/no/such/route").status_code == 401  # no probing for routes without a key


def test_body_limit_is_enforced_while_the_body_arrives() -> None:
    """A chunked body with no Content-Length stops being read at the first chunk past the limit."""
    got: list[int] = []

    async def app(scope, receive, send) -> None:  # noqa: ANN001 - reads the whole body, as a route does
        while True:
            msg = await receive()
            got.append(len(msg.get("body", b"")))
            if not msg.get("more_body"):
                break

    guard = Guard(app, keys=[], max_upload_bytes=10_000, max_body_bytes=1_000)
    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(100)]
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(msg: dict) -> None:
        sent.append(msg)

    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": []}
    with pytest.raises(Exception) as exc:  # the route's exception handler turns it into a 413
        asyncio.run(guard(scope, receive, send))
    assert getattr(exc.value, "status", None) == 413
    assert len(got) == 2 and len(chunks) == 97  # 3 chunks read (1,200 bytes), 97 never received


def test_declared_too_large_is_413_before_reading(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_upload_bytes=2048)
    files = tmp_path / "data" / "files"
    r = raw(app).post(
        "/v1/files",
        files={"file": ("big.jsonl", b"x" * 500_000)},
        data={"purpose": "fine-tune"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    j = raw(app).post(
        "/v1/chat/completions", content=b"[" * (17 << 20), headers={"content-type": "application/json"}
    )
    assert j.status_code == 413 and j.json()["error"]["code"] == "request_too_large"
    assert list(files.iterdir()) == []


def test_a_failed_upload_leaves_no_file_behind(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_upload_bytes=4096)
    client = in_process_client(app)
    files = tmp_path / "data" / "files"
    with pytest.raises(openai.APIStatusError) as exc:  # over the limit after the multipart framing
        client.files.create(file=("t.jsonl", chat_lines(12) * 10), purpose="fine-tune")
    assert exc.value.status_code == 413
    ok = client.files.create(file=("t.jsonl", chat_lines(12)), purpose="fine-tune")
    assert [p.name for p in files.iterdir()] == [f"{ok.id}.jsonl"]


def test_upload_of_a_file_with_a_huge_integer_is_an_error_naming_the_line(tmp_path: Path) -> None:
    # case bigint-json-500 (/v1/files): was a 500 and an orphan file with no database row
    app = make_app(tmp_path)
    client = in_process_client(app)
    data = (Path(__file__).parents[2] / "assets" / "serve" / "bigint_line.jsonl").read_bytes()
    f = client.files.create(file=("bigint_line.jsonl", data), purpose="fine-tune")
    assert f.status == "error"
    assert "line 21" in (f.status_details or "").lower() and "invalid_json" in (f.status_details or "")
    on_disk = {p.stem for p in (tmp_path / "data" / "files").iterdir()}
    assert on_disk == {x.id for x in client.files.list()}  # every file on disk has its row


def test_upload_of_a_file_with_a_lone_surrogate_is_an_error_naming_the_line(tmp_path: Path) -> None:
    # case lone-surrogate-passes-check-then-crashes (/v1/files): was 'processed', then the job failed later
    client = in_process_client(make_app(tmp_path))
    data = (Path(__file__).parents[2] / "assets" / "serve" / "lone_surrogate.jsonl").read_bytes()
    f = client.files.create(file=("lone_surrogate.jsonl", data), purpose="fine-tune")
    assert f.status == "error" and "line 21" in (f.status_details or "").lower(), f.status_details


def test_a_chat_file_with_one_line_missing_its_answer_is_an_error_and_a_prompts_file_is_not(
    tmp_path: Path,
) -> None:
    # prompts-only files are reinforcement data; a chat file where one line lost its answer is a broken SFT file
    import json

    client = in_process_client(make_app(tmp_path))
    prompt = json.dumps({"messages": [{"role": "user", "content": "Where is my order?"}]}) + "\n"
    mixed = chat_lines(12) + prompt.encode()
    f = client.files.create(file=("mixed.jsonl", mixed), purpose="fine-tune")
    assert f.status == "error", f.status_details
    assert "line 13" in (f.status_details or "").lower() and "no_assistant_message" in (
        f.status_details or ""
    )
    only_prompts = client.files.create(file=("prompts.jsonl", (prompt * 12).encode()), purpose="fine-tune")
    assert only_prompts.status == "processed", only_prompts.status_details
