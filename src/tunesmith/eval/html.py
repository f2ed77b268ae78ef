"""report.html: one self-contained, offline page (inline CSS and SVG, no scripts, no network).

Reads top to bottom for a manager: the verdict in plain words (which candidate to use, by how much, on how
many examples, what the gate decided and why: ``eval/verdict.py``), the gate's rules in words, the headline
table with a glossary line per metric shown, metric bars per candidate (higher-is-better and lower-is-better
metrics in separate charts), confusion matrices, the training curves (train loss per logged step, hold-out
loss at each evaluation, where the run stopped), answer-length histograms, how every number was scored, and
the examples where the candidates disagree. Every plot is generated here as SVG.
"""

from __future__ import annotations

from html import escape
from typing import Any

from tunesmith.eval.glossary import metric_info
from tunesmith.eval.verdict import verdict_for
from tunesmith.results.eval import Candidate, EvalReport, Example, Gate, TrainingEnd

PALETTE = ["#8a8f98", "#c28b2c", "#6a5acd", "#1f7a4d", "#b03a48", "#2a6fb0"]
CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:6px 0 2px}h2{font-size:19px;margin:34px 0 10px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6472;margin:0 0 18px}.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:14px 16px;margin:10px 0}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:6px 9px;border-bottom:1px solid #eceef2;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left;white-space:nowrap}th{background:#f0f2f5;font-weight:600}td.best{font-weight:700;color:#1f7a4d}
.pass{color:#1f7a4d;font-weight:700}.fail{color:#b03a48;font-weight:700}.ex td{text-align:left;font-size:13.5px}
.verdict{font-size:17px;border-left:5px solid #2a6fb0}.ok{color:#1f7a4d}.bad{color:#b03a48}.grid{display:flex;flex-wrap:wrap;gap:14px}.note{color:#5b6472;font-size:13px}
code{background:#eef0f3;padding:1px 4px;border-radius:3px;font-size:13px}
"""


def render_html(report: EvalReport) -> str:
    """The whole page for a report."""
    cands = report.candidates
    parts = [
        f"<h1>Evaluation report: {escape(report.task)}</h1>",
        f'<p class="sub">{report.n} hold-out examples &middot; data <code>{escape(str(report.data or ""))}</code>'
        + (f" &middot; run <code>{escape(report.adapter)}</code>" if report.adapter else "")
        + "</p>",
        f'<div class="card verdict">{escape(report.verdict or verdict_for(report))}</div>',
        _gate(report.gate),
    ]
    if report.applied is not None:
        parts.append(
            f'<div class="card"><b>Metrics</b> ({escape(", ".join(report.applied.families))}): {escape(report.applied.reason)}</div>'
        )
    parts += [
        "<h2>Headline</h2>",
        _table(report.headline, cands),
        _glossary(report.headline, cands),
        "<h2>Metrics per candidate</h2>",
        *_bar_charts(report.headline, cands),
    ]
    if report.graders:
        parts += ["<h2>Graders and judges</h2>", _graders(report)]
    mats = "".join(_confusion(name, c.metrics) for name, c in cands.items() if "confusion" in c.metrics)
    if mats:
        parts += [
            "<h2>Confusion matrices</h2>",
            '<p class="note">Rows: the right label; columns: the answer (greedy, matched). Darker = more.</p>',
            f'<div class="grid">{mats}</div>',
        ]
    matched = {name: c.matches for name, c in cands.items() if c.matches}
    if matched:
        parts += ["<h2>How answers matched a label</h2>", _matches(matched)]
    if report.training:
        parts += [
            "<h2>Training and validation loss</h2>",
            f'<div class="card">{_lines(report.training, report.training_end)}</div>',
            '<p class="note">Training loss: mean loss of each logged optimizer step; hold-out loss: measured on '
            "the hold-out at step 0, at each evaluation and when the run ended (a stop included).</p>",
        ]
    if report.lengths:
        hists = "".join(
            _histogram(name, vals, PALETTE[i % len(PALETTE)])
            for i, (name, vals) in enumerate(report.lengths.items())
        )
        parts += ["<h2>Answer lengths (tokens)</h2>", f'<div class="grid">{hists}</div>']
    parts += ["<h2>How each number was scored</h2>", _scoring(report.scoring)]
    parts += ["<h2>Where the candidates disagree</h2>", _examples(report.examples, list(cands))]
    body = "\n".join(parts)
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tunesmith evaluation</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n'


def _gate(gate: Gate) -> str:
    if not gate.rules:
        return '<div class="card">No release gate rules were given.</div>'
    verdict = '<span class="pass">PASSED</span>' if gate.passed else '<span class="fail">FAILED</span>'
    items = "".join(
        f'<li class="{"ok" if r.passed else "bad"}">{"&#10003;" if r.passed else "&#10007;"} '
        f'{escape(r.words or r.message)} <span class="note">(rule <code>{escape(r.rule)}</code>)</span></li>'
        for r in gate.rules
    )
    return f'<div class="card"><b>Release gate: {verdict}</b><ul>{items}</ul></div>'


def _matches(matched: dict[str, dict[str, int]]) -> str:
    kinds = ["exact", "normalised", "in_answer", "none"]
    head = "".join(f"<th>{k}</th>" for k in kinds)
    rows = "".join(
        f"<tr><td><b>{escape(name)}</b></td>{''.join(f'<td>{m.get(k, 0)}</td>' for k in kinds)}</tr>"
        for name, m in matched.items()
    )
    note = (
        '<p class="note">exact: the answer is a label; normalised: equal after folding case, quotes or punctuation, '
        "where only one label has that form; in_answer: the one label named in a longer answer; none: invalid.</p>"
    )
    return f"<table><tr><th>candidate</th>{head}</tr>{rows}</table>{note}"


EXTRA = [("latency_ms.p50", 0), ("latency_ms.p95", 0), ("tokens_per_s", 1), ("cost_per_1k_requests_usd", 4)]


def _shown(headline: list[str], cands: dict[str, Candidate]) -> list[tuple[str, int]]:
    """The table's metric paths (the task's headline, then speed and cost) that some candidate has."""
    cols = [(c, 3) for c in headline if any(v.metric(c) is not None for v in cands.values())]
    return cols + [(c, d) for c, d in EXTRA if any(v.metric(c) is not None for v in cands.values())]


def _table(headline: list[str], cands: dict[str, Candidate]) -> str:
    """One row per candidate; the best value of each column in bold green (the lowest where lower is better;
    the header's arrow says which)."""
    cols = _shown(headline, cands)
    head = "".join(
        f"<th>{escape(metric_info(c).name)} {'&darr;' if metric_info(c).lower_is_better else '&uarr;'}</th>"
        for c, _ in cols
    )
    rows = []
    for name, v in cands.items():
        cells = []
        for c, digits in cols:
            x = v.metric(c)
            values = [y for o in cands.values() if (y := o.metric(c)) is not None]
            target = min(values) if metric_info(c).lower_is_better else max(values)
            best = x is not None and x == target and len(set(values)) > 1  # a tie marks nobody
            cells.append(f'<td class="{"best" if best else ""}">{_fmt(x, digits)}</td>')
        rows.append(f"<tr><td><b>{escape(name)}</b></td>{''.join(cells)}</tr>")
    return f"<table><tr><th>candidate</th>{head}</tr>{''.join(rows)}</table>"


def _glossary(headline: list[str], cands: dict[str, Candidate]) -> str:
    """A line per metric in the table: its name, the path it is stored under, which way is better, what it
    measures."""
    items = []
    for c, _ in _shown(headline, cands):
        info = metric_info(c)
        meaning = f": {escape(info.meaning)}" if info.meaning else ""
        items.append(
            f"<li><b>{escape(info.name)}</b> <code>{escape(c)}</code> ({info.better} is better){meaning}</li>"
        )
    return f'<div class="card note"><b>What the numbers mean</b><ul>{"".join(items)}</ul></div>'


def _fmt(x: float | None, digits: int = 3) -> str:
    return "&ndash;" if x is None else f"{x:.{digits}f}"


def _bar_charts(headline: list[str], cands: dict[str, Candidate]) -> list[str]:
    """Higher-is-better metrics in one chart, lower-is-better ones (invalid answers, ...) in another, so a
    tall bar always means the same thing within a chart."""
    mets = [
        m
        for m in headline
        if m not in ("reward_score", "reward_margin", "logp_margin", "generated_reward")
        and any(c.metric(m) is not None for c in cands.values())
    ]
    higher = [m for m in mets if not metric_info(m).lower_is_better]
    lower = [m for m in mets if metric_info(m).lower_is_better]
    out = [f'<div class="card"><b>Higher is better</b>{_bars(higher, cands)}</div>']
    if lower:
        out.append(f'<div class="card"><b>Lower is better</b>{_bars(lower, cands)}</div>')
    return out


def _bars(mets: list[str], cands: dict[str, Candidate]) -> str:
    """Grouped bars: one group per metric in [0, 1], one bar per candidate."""
    names = list(cands)
    if not mets:
        return "<p>No metrics.</p>"
    W, H, left, bottom = 980, 260, 40, 40
    gw = (W - left) / max(len(mets), 2)  # a lone metric keeps a half-width group
    bw = min(34.0, (gw - 20) / max(1, len(names)))
    out = [f'<svg viewBox="0 0 {W} {H + 30}" width="100%" role="img" aria-label="metrics per candidate">']
    for t in range(0, 11, 2):
        y = H - bottom - (H - bottom - 10) * t / 10
        out.append(
            f'<line x1="{left}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{t / 10:.1f}</text>'
        )
    for gi, m in enumerate(mets):
        x0 = left + gi * gw + (gw - bw * len(names)) / 2
        for ni, name in enumerate(names):
            val = cands[name].metric(m)
            if val is None:
                continue
            h = (H - bottom - 10) * max(0.0, min(1.0, val))
            x = x0 + ni * bw
            out.append(
                f'<rect x="{x:.1f}" y="{H - bottom - h:.1f}" width="{bw - 3:.1f}" height="{h:.1f}" fill="{PALETTE[ni % len(PALETTE)]}"><title>{escape(name)} {escape(m)} = {val:.3f}</title></rect>'
            )
            out.append(
                f'<text x="{x + (bw - 3) / 2:.1f}" y="{H - bottom - h - 3:.1f}" font-size="10" text-anchor="middle">{val:.2f}</text>'
            )
        out.append(
            f'<text x="{left + gi * gw + gw / 2:.1f}" y="{H - bottom + 16}" font-size="12" text-anchor="middle">{escape(metric_info(m).name)}</text>'
        )
    out.append(_legend(names, H + 8, left))
    return "".join(out) + "</svg>"


def _legend(names: list[str], y: float, x0: float) -> str:
    parts, x = [], x0
    for i, n in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/><text x="{x + 16}" y="{y + 11}" font-size="12">{escape(n)}</text>'
        )
        x += 30 + 7.5 * len(n)
    return "".join(parts)


def _confusion(name: str, m: dict[str, Any]) -> str:
    conf = m["confusion"]
    labels, cols, mat = conf["labels"], conf["columns"], conf["matrix"]
    cell, lw, top = 40, 120, 100
    W, H = lw + cell * len(cols) + 10, top + cell * len(labels) + 10
    peak = max([max(r) for r in mat] + [1])
    out = [
        f'<div class="card"><b>{escape(name)}</b><br><svg width="{W}" height="{H}" role="img" aria-label="confusion matrix {escape(name)}">'
    ]
    for j, c in enumerate(cols):
        x = lw + j * cell + cell / 2
        out.append(
            f'<text transform="translate({x - 4},{top - 6}) rotate(-50)" font-size="11">{escape(c[:18])}</text>'
        )
    for i, lab in enumerate(labels):
        y = top + i * cell
        out.append(
            f'<text x="{lw - 6}" y="{y + cell / 2 + 4}" font-size="11" text-anchor="end">{escape(lab[:18])}</text>'
        )
        for j, v in enumerate(mat[i]):
            a = v / peak
            color = (
                f"rgba(31,122,77,{0.1 + 0.9 * a:.2f})"
                if j == i
                else f"rgba(176,58,72,{0.08 + 0.9 * a:.2f})"
                if v
                else "#f7f7f9"
            )
            out.append(
                f'<rect x="{lw + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{color}"/>'
            )
            out.append(
                f'<text x="{lw + j * cell + cell / 2 - 1}" y="{y + cell / 2 + 4}" font-size="12" text-anchor="middle" fill="{"#fff" if a > 0.55 else "#222"}">{v}</text>'
            )
    return "".join(out) + "</svg></div>"


def _lines(curves: dict[str, list[list[float]]], end: TrainingEnd | None = None) -> str:
    """Training loss per logged step (line), hold-out loss at each evaluation (line and dots), the best
    hold-out point, and a dashed line where a run that did not complete its plan stopped."""
    W, H, left, bottom = 980, 260, 50, 30
    curves = {k: v for k, v in curves.items() if k in ("loss", "val_loss") and v}
    pts = [p for series in curves.values() for p in series]
    if not pts:
        return "<p>No loss was logged.</p>"
    x_max = max([p[0] for p in pts] + [float(end.total_steps or 0) if end else 0.0]) or 1
    y_min, y_max = min(p[1] for p in pts), max(p[1] for p in pts)
    span = (y_max - y_min) or 1.0

    def xy(p: list[float]) -> tuple[float, float]:
        return left + (W - left - 20) * p[0] / x_max, 10 + (H - bottom - 10) * (1 - (p[1] - y_min) / span)

    out = [f'<svg viewBox="0 0 {W} {H + 26}" width="100%" role="img" aria-label="loss curves">']
    for t in range(5):
        v = y_min + span * t / 4
        _, y = xy([0, v])
        out.append(
            f'<line x1="{left}" x2="{W - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:.2f}</text>'
        )
    for t in (0, x_max / 2, x_max):
        x, _ = xy([t, y_min])
        out.append(
            f'<text x="{x:.1f}" y="{H - bottom + 14}" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    out.append(f'<text x="{W / 2}" y="{H}" font-size="12" text-anchor="middle">optimizer step</text>')
    colors = {"loss": "#2a6fb0", "val_loss": "#c28b2c"}
    for key, series in curves.items():
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, series))
        out.append(f'<polyline fill="none" stroke="{colors[key]}" stroke-width="2" points="{path}"/>')
        for p in series if key == "val_loss" or len(series) < 40 else []:
            x, y = xy(p)
            what = "hold-out" if key == "val_loss" else "training"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colors[key]}"><title>step {p[0]:g}: {what} loss {p[1]:.4f}</title></circle>'
            )
    if end is not None:
        out.append(_end_marks(end, curves.get("val_loss", []), xy, H - bottom))
    x = left
    for key in curves:
        out.append(
            f'<rect x="{x}" y="{H + 10}" width="12" height="12" fill="{colors[key]}"/><text x="{x + 16}" y="{H + 21}" font-size="12">{"training loss" if key == "loss" else "validation loss (hold-out)"}</text>'
        )
        x += 220
    return "".join(out) + "</svg>"


_ENDS = {
    "stopped": "stopped (Ctrl-C or a stop request)",
    "early_stopped": "early stop (hold-out loss stopped improving)",
}


def _end_marks(end: TrainingEnd, val: list[list[float]], xy: Any, floor: float) -> str:
    out = []
    best = next((p for p in val if end.best_step is not None and p[0] == end.best_step), None)
    if best is not None:
        x, y = xy(best)
        saved = " (the weights saved)" if (end.weights or "").startswith("best") else ""
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#1f7a4d" stroke-width="2"><title>best hold-out loss {best[1]:.4f} at step {best[0]:g}{escape(saved)}</title></circle>'
        )
    if end.total_steps and end.steps < end.total_steps:
        x, _ = xy([end.steps, 0])
        text = f"{_ENDS.get(end.status, end.status)} at step {end.steps} of {end.total_steps}"
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="10" y2="{floor:.1f}" stroke="#b03a48" stroke-dasharray="5,4"/>'
            f'<text x="{x + 6:.1f}" y="22" font-size="12" fill="#b03a48">{escape(text)}</text>'
        )
    return "".join(out)


def _histogram(name: str, values: list[int], color: str, bins: int = 12) -> str:
    W, H = 250, 140
    if not values:
        return ""
    lo, hi = min(values), max(values)
    width = max(1.0, (hi - lo + 1) / bins)
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    peak = max(counts)
    bw = (W - 20) / bins
    out = [
        f'<div class="card"><b>{escape(name)}</b> <span class="note">mean {sum(values) / len(values):.1f}, range {lo}&ndash;{hi}</span><br><svg width="{W}" height="{H + 16}">'
    ]
    for i, c in enumerate(counts):
        h = (H - 10) * c / peak
        out.append(
            f'<rect x="{10 + i * bw:.1f}" y="{H - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" fill="{color}"><title>{lo + i * width:.0f}-{lo + (i + 1) * width:.0f} tokens: {c}</title></rect>'
        )
    out.append(
        f'<text x="10" y="{H + 13}" font-size="11">{lo}</text><text x="{W - 10}" y="{H + 13}" font-size="11" text-anchor="end">{hi} tokens</text>'
    )
    return "".join(out) + "</svg></div>"


def _scoring(scoring: dict[str, str]) -> str:
    items = "".join(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in scoring.items())
    return f'<div class="card"><ul>{items}</ul></div>'


def _examples(examples: list[Example], names: list[str]) -> str:
    if not examples:
        return '<div class="card">The candidates agree on every hold-out example.</div>'
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for ex in examples:
        cells = "".join(
            f'<td class="{"ok" if ex.correct.get(n) else "bad"}">{escape(str(ex.answers.get(n, ""))[:240])}'
            + (f' <span class="note">({escape(ex.matched[n])})</span>' if n in ex.matched else "")
            + "</td>"
            for n in names
        )
        rows.append(
            f"<tr><td>{escape(ex.input[:300])}</td><td>{escape(str(ex.reference)[:200])}</td>{cells}</tr>"
        )
    return f'<table class="ex"><tr><th>input</th><th>expected</th>{head}</tr>{"".join(rows)}</table><p class="note">Green: right; red: wrong.</p>'


def _graders(report: EvalReport) -> str:
    """eval --grader: mean / pass rate per grader and candidate, pairwise verdicts (both orders), and each
    judge's calibration next to its numbers (eval/judged.py)."""
    from tunesmith.eval.judged import calibration_words

    cands = report.candidates
    head = "".join(f"<th>{escape(n)}</th>" for n in cands)
    rows, notes = [], []
    for g, info in report.graders.items():
        cells = "".join(
            f"<td>{_fmt(c.metric(f'grader.{g}'))} / {_fmt(c.metric(f'grader_pass_rate.{g}'))}</td>" for c in cands.values()
        )
        if any(c.metric(f"grader.{g}") is not None for c in cands.values()):
            rows.append(f"<tr><td>{escape(g)} <span class='note'>({escape(str(info.get('type')))})</span></td>{cells}</tr>")
        pair = cands["finetuned"].metrics.get("pairwise", {}).get(g, {}) if "finetuned" in cands else {}
        for other, v in pair.items():
            fp = "-" if v.get("first_position_rate") is None else f"{v['first_position_rate']:.2f}"
            notes.append(
                f"<li><b>{escape(g)}</b>: finetuned vs <code>{escape(other)}</code>: win {v['win']:.2f}, tie "
                f"{v['tie']:.2f}, loss {v['loss']:.2f} on {v['n']} pairs, each judged in both orders (position bias: "
                f"the answer shown first was chosen {fp} of the time; the two orders agreed on {v['order_consistency']:.2f})</li>"
            )
        weak = f' <span class="bad">{escape(info["note"])}</span>' if info.get("weak") else ""
        model = f" {escape(str(info['model']))}:" if info.get("model") else ""
        notes.append(f"<li><b>{escape(g)}</b>:{model} {escape(calibration_words(info))}{weak}</li>")
    table = f"<table><tr><th>grader (mean / pass rate)</th>{head}</tr>{''.join(rows)}</table>" if rows else ""
    return f'{table}<div class="card"><ul>{"".join(notes)}</ul></div>'
