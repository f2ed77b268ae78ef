"""`data convert --with-context`: the RAG engineer's add_context on a real (MiniLM) index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app

pytestmark = pytest.mark.integration


def test_convert_with_context_adds_retrieved_passages(tmp_path: Path):
    from tunesmith.rag.index import index_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(
        "# Refunds\n\nRefunds for annual plans are paid pro rata for unused months within 14 days.\n"
    )
    (docs / "passwords.md").write_text(
        "# Passwords\n\nA password reset link stays valid for one hour after it is sent.\n"
    )
    (docs / "exports.md").write_text("# Exports\n\nPDF export needs pop-ups allowed in Firefox.\n")
    index_documents([docs], tmp_path / "index")
    rows = [
        {"prompt": "How long is a password reset link valid?", "completion": "One hour."},
        {
            "prompt": "Do I get money back for unused months of an annual plan?",
            "completion": "Yes, pro rata within 14 days.",
        },
    ]
    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "raft.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "data",
            "convert",
            str(src),
            "--out",
            str(out),
            "--with-context",
            str(tmp_path / "index"),
            "--k",
            "1",
            "--distractors",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(got) == 2
    assert "passwords.md" in got[0]["rag_sources"] and len(got[0]["rag_sources"]) == 2
    assert "one hour" in got[0]["messages"][-2]["content"].lower()  # the retrieved passage is in the prompt
    assert got[0]["messages"][-1]["role"] == "assistant"
