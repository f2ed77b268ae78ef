"""`tunesmith score RUN --data FILE`: score responses with a trained reward model (method: reward run)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `score` to the root app."""
    app.command("score", help="Score responses with a reward model run: preference pairs (chosen vs rejected, "
                "with pairwise accuracy) or conversations (chat / prompt-completion JSONL).")(score)  # fmt: skip


def score(
    run: Path = typer.Argument(..., help="Folder of a finished method: reward run."),
    data: Path = typer.Option(
        ..., "--data", "-d", help="JSONL of preference pairs, chat conversations or prompt/completion lines."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write one JSON line of scores per input line here."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Score only the first N lines."),
    show: int = typer.Option(10, "--show", min=0, help="Rows shown in the table."),
) -> None:
    import json

    from rich.table import Table

    from tunesmith.cli.render import console
    from tunesmith.data.formats import load_records_or_raise, to_chat
    from tunesmith.errors import TunesmithError
    from tunesmith.models.scoring import load_reward_scorer, preference_accuracy

    loaded = load_records_or_raise(data)
    if loaded.task not in ("preference", "chat", "completion"):
        raise TunesmithError(
            f"{data} holds {loaded.task} data; score takes preference pairs or conversations.",
            'Give {"prompt","chosen","rejected"} pairs, {"messages": [...]} or {"prompt","completion"} lines.',
        )
    records = loaded.records[:limit] if limit else loaded.records
    scorer = load_reward_scorer(run)
    rows: list[dict] = []
    if loaded.task == "preference":
        pairs = scorer.pair_scores([r.data for r in records])
        for r, (c, j) in zip(records, pairs, strict=True):
            rows.append(
                {"line": r.line, "score_chosen": c, "score_rejected": j, "margin": c - j, "correct": c > j}
            )
        table = Table("line", "chosen", "rejected", "margin", "correct")
        for row in rows[:show]:
            table.add_row(str(row["line"]), f"{row['score_chosen']:.3f}", f"{row['score_rejected']:.3f}",
                          f"{row['margin']:+.3f}", "yes" if row["correct"] else "no")  # fmt: skip
        console.print(table)
        acc = preference_accuracy([row["margin"] for row in rows])
        console.print(
            f"pairwise accuracy {acc:.1%} on {len(rows)} pairs; mean margin {sum(r['margin'] for r in rows) / len(rows):+.3f}"
        )
    else:
        convs = [to_chat(r.data, loaded.task) for r in records]
        for r, s, conv in zip(records, scorer.score(convs), convs, strict=True):
            rows.append({"line": r.line, "score": s, "answer": conv[-1]["content"]})
        table = Table("line", "score", "answer")
        for row in rows[:show]:
            table.add_row(str(row["line"]), f"{row['score']:.3f}", row["answer"][:80])
        console.print(table)
        console.print(
            f"mean score {sum(r['score'] for r in rows) / len(rows):.3f} on {len(rows)} conversations"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        console.print(f"scores written to {out}")
