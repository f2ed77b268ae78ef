"""Property-based API test with schemathesis over the app's own /openapi.json: every operation, with bodies
and parameters generated from the published schemas (valid and invalid ones), never answers 5xx and always
answers errors in OpenAI's shape. Generation is scripted (this is about the HTTP layer); embeddings use the
real embedded MiniLM. Bounded: a few hundred examples in all, derandomized."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from serve_unit_toy import ScriptedEngine, make_app

pytestmark = pytest.mark.unit

_app = make_app(Path(tempfile.mkdtemp(prefix="ts-schema-")))
_app.state.engine = ScriptedEngine(['{"ok": true}'])
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case) -> None:  # noqa: ANN001 - a schemathesis Case
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert "Traceback" not in response.text
