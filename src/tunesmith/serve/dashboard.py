"""The dashboard at ``/``: jobs with status, a live loss curve (inline SVG, no external assets), events,
evaluation reports and models. One self-contained HTML page that polls the same ``/v1`` API the SDK uses
(plus two read-only helpers below), so it works offline and behind the same API key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tunesmith.errors import TunesmithError
from tunesmith.results.eval import Candidate, read_eval_report
from tunesmith.serve.errors import not_found

PAGE = Path(__file__).parent / "static" / "dashboard.html"


def add_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/v1/tunesmith/jobs/{job_id}/metrics")
    def metrics(job_id: str) -> dict:
        store = app.state.store
        if store.get_job(job_id) is None:
            raise not_found(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return {"object": "list", "data": store.metrics_series(job_id)}

    @app.get("/v1/tunesmith/reports")
    def reports() -> dict:
        """Evaluation reports (``report.json`` written by `tunesmith eval --out`) found under the data folder."""
        root: Path = app.state.settings.data_dir
        out = []
        for f in sorted(root.glob("reports/*/report.json")) + sorted(root.glob("runs/*/eval/report.json")):
            try:
                rep = read_eval_report(f)  # any version of report.json, typed
            except TunesmithError:
                continue
            out.append(
                {
                    "name": f.parent.name if f.parent.name != "eval" else f.parent.parent.name,
                    "task": rep.task,
                    "n": rep.n,
                    "headline": rep.headline,
                    "candidates": {
                        name: _headline_first(rep.headline, c) for name, c in rep.candidates.items()
                    },
                }
            )
        return {"object": "list", "data": out}


def _headline_first(headline: list[str], cand: Candidate) -> dict:
    """A candidate's metrics with the report's headline numbers first (the page shows the first two)."""
    first = {k: cand.metric(k) for k in headline if cand.metric(k) is not None}
    return {**first, **cand.metrics}
