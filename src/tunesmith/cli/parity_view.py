"""Rendering of a GGUF parity report (``export --verify``, ``eval --engine llamacpp``) and of exports."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from tunesmith.errors import TunesmithError


def render_parity(console: Any, report: Any, limit: int = 10) -> None:
    """The comparison table, the gate line and the first ``limit`` disagreements."""
    table = Table(
        "",
        "tunesmith (transformers)",
        "GGUF (llama.cpp)",
        title=f"parity: {report.n} hold-out examples, {report.quant}",
    )
    table.add_row(report.metric, f"{report.metric_tunesmith:.3f}", f"{report.metric_gguf:.3f}")
    console.print(table)
    console.print(
        f"identical answers {report.identical_answers:.1%} (identical text {report.identical_text:.1%}); "
        f"prompts tokenized identically {report.prompt_tokens_identical:.1%}",
        highlight=False,
    )
    if report.max_logprob_diff is not None:
        console.print(
            f"max next-token log-prob difference {report.max_logprob_diff:.4f} "
            f"(top-{10} tokens of {report.logprob_prompts} prompts)",
            highlight=False,
        )
    mark = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    console.print(f"{mark} {escape(report.gate)}", highlight=False)
    for d in report.disagreements[:limit]:
        console.print(
            f"  #{d.index}: {escape(d.input[:70])!s}\n    reference {escape(d.reference)!r}  tunesmith "
            f"{escape(d.tunesmith)!r}  gguf {escape(d.gguf)!r}",
            highlight=False,
            soft_wrap=True,
        )
    if len(report.disagreements) > limit:
        console.print(f"  ... {len(report.disagreements) - limit} more in parity.json", highlight=False)


def raise_if_failed(report: Any) -> None:
    """Exit 1 (through the root handler) when the parity gate failed."""
    if not report.passed:
        raise TunesmithError(
            f"The GGUF does not match the run it was exported from ({report.gate} failed).",
            "Export with a higher-precision --quant (f16 or q8_0), or look at the disagreements above.",
        )
