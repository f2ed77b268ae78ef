"""Issue 17: indexing reports through the one progress helper (tunesmith.progress): files done of the total,
so the CLI shows a count and an ETA; the CLI's output (--json included) stays free of progress lines."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.progress import ProgressEvent, use_sink
from tunesmith.rag.index import index_documents

pytestmark = pytest.mark.integration


def test_indexing_reports_files_done_of_the_total(corpus, tmp_path):
    seen: list[ProgressEvent] = []
    with use_sink(seen.append):
        report = index_documents([corpus], tmp_path / "idx")
    steps = [(e.state, e.done, e.total) for e in seen if e.name == "indexing documents"]
    n = report.files_seen
    assert n == 6 and report.chunks_embedded > 0
    assert steps == [("start", 0, n), *(("advance", i, n) for i in range(1, n + 1)), ("done", n, n)]


def test_rag_index_progress_goes_to_stderr_and_json_stays_clean(corpus, tmp_path):
    from tunesmith.cli.progress_view import ProgressLines
    from tunesmith.cli.render import err_console

    # the sink cli.main installs when stdout is not a terminal, printing every event here (every_s=0)
    with use_sink(ProgressLines(err_console, every_s=0.0)):
        args = ["rag", "index", str(corpus), "--index", str(tmp_path / "idx"), "--json"]
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == 6
    assert "indexing documents: 6/6 (100%)" in res.stderr and "indexing documents: 3/6 (50%)" in res.stderr
