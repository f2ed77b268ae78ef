"""Issue 17: `tunesmith serve --base-model merged/` serves the folder under the clean id `merged` (it was
`merged/`). The server itself is not started: the test reads the settings the command builds."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_base_model_folder_is_served_under_a_clean_id(tmp_path, monkeypatch):
    import uvicorn

    import tunesmith.serve.app as serve_app

    (tmp_path / "merged").mkdir()
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(serve_app, "create_app", lambda settings: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    args = ["serve", "--port", str(_free_port()), "--data-dir", str(tmp_path / "srv"), "--concurrency", "0"]
    res = CliRunner().invoke(app, [*args, "--base-model", "merged/", "--base-model", "./merged"])
    assert res.exit_code == 0, res.output
    assert seen["settings"].extra_base_models == ["merged", "merged"]
