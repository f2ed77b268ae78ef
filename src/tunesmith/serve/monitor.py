"""Monitoring: logged requests become the next training set; per-model latency and volume.

``export_logs`` writes one chat line per logged request: the request's messages plus the answer, where a
reviewer's correction (``tunesmith logs correct``) replaces the model's answer. Lines are in the same
format the data checker and the trainer read, so the file can go straight into ``tunesmith data check``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.serve.chat import latency_summary
from tunesmith.serve.store import Store


def export_logs(store: Store, out: Path, *, model: str | None = None, corrected_only: bool = False) -> int:
    n = 0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in store.request_logs(model):
            answer = row["corrected"] if row["corrected"] is not None else row["response"]
            if (corrected_only and row["corrected"] is None) or not answer:
                continue
            messages = json.loads(row["messages"]) + [{"role": "assistant", "content": answer}]
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)
    return n


def log_stats(store: Store) -> list[dict[str, Any]]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in store.request_logs():
        by_model.setdefault(row["model"], []).append(row)
    return [
        latency_summary(m, [r["latency_ms"] for r in rows], sum(r["completion_tokens"] or 0 for r in rows))
        for m, rows in by_model.items()
    ]
