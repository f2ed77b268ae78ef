"""`tunesmith eval`, `tunesmith compare`, `tunesmith demo`: rendering only; the work is in ``tunesmith.eval``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tunesmith.cli.render import console
from tunesmith.errors import TunesmithError, UsageError

if TYPE_CHECKING:
    from tunesmith.results.eval import EvalReport


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("compare")(compare_cmd)
    app.command("demo")(demo_cmd)


def eval_cmd(
    data: Path = typer.Option(..., "--data", help="Hold-out file (JSONL/CSV) with reference answers."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for report.json, report.html and predictions.jsonl. A folder that holds a report "
        "already is refused (the earlier report is kept) unless --force.",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Base model (alias or folder). Default: the run's base, else smollm2-135m-instruct.",
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="A training run folder (runs/<id>) to evaluate as 'finetuned'."
    ),
    baselines: str = typer.Option(
        "zero-shot,few-shot",
        "--baselines",
        help="Prompted baselines: any of zero-shot,few-shot,rag ('' for none).",
    ),
    train: Path | None = typer.Option(
        None,
        "--train",
        help="Training file the few-shot examples are drawn from (default: the run's data.train).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Project config whose eval section sets k, batch size, format rules, prices."
    ),
    require: list[str] = typer.Option(
        [],
        "--require",
        help='Release gate rule, e.g. "finetuned.accuracy>=0.9" (repeatable). Exit 1 when one fails.',
    ),
    task: str | None = typer.Option(None, "--task", help="Force the data format (detected when omitted)."),
    rag_index: str | None = typer.Option(
        None, "--rag-index", help="Index folder (or postgresql:// URL) for the rag baseline."
    ),
    reward: Path | None = typer.Option(
        None, "--reward", help="A reward run: adds reward_score for chat/completion answers."
    ),
    system_prompt: str | None = typer.Option(
        None,
        "--system-prompt",
        help="System prompt (default: the config's, else generated from the labels/keys).",
    ),
    max_examples: int | None = typer.Option(
        None, "--max-examples", help="Evaluate only the first N examples."
    ),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, help="Generation budget per answer (default: eval.max_new_tokens)."
    ),
    engine: str = typer.Option(
        "transformers",
        "--engine",
        help="transformers (tunesmith's own), or llamacpp: --model FILE.gguf answers the hold-out with "
        "llama.cpp and is compared with tunesmith's answers of the run it was exported from (parity.json; "
        "exit 1 when the quant's parity gate fails).",
    ),
    gate_q4: bool = typer.Option(
        False, "--gate-q4", help="With --engine llamacpp and a q4_k_m GGUF: gate the metric, not only report."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace the report an earlier evaluation wrote to --out."
    ),
    grader: list[Path] = typer.Option(
        [],
        "--grader",
        help="Grader JSON file (OpenAI's grader shape, docs/graders.md), repeatable: adds each grader's mean "
        "and pass rate per candidate (metrics grader.NAME, grader_pass_rate.NAME; pairwise: win/tie/loss).",
    ),
    judge_url: str | None = typer.Option(
        None, "--judge-url", help="OpenAI-compatible base URL for model judges (default: eval.judge_url)."
    ),
) -> None:
    """Evaluate a fine-tuned run against prompted baselines on the same hold-out, and write the report."""
    if engine != "transformers":
        _eval_llamacpp(
            engine, data, out, model, adapter, config, system_prompt, max_examples, max_new_tokens, gate_q4
        )
        return
    _eval(
        data,
        out,
        model,
        adapter,
        baselines,
        train,
        config,
        require,
        task,
        rag_index,
        reward,
        system_prompt,
        max_examples,
        max_new_tokens,
        force=force,
        graders=grader,
        judge_url=judge_url,
    )


def _eval(
    data,
    out,
    model,
    adapter,
    baselines,
    train,
    config,
    require,
    task,
    rag_index,
    reward,
    system_prompt,
    max_examples,
    max_new_tokens,
    force=False,
    graders=(),
    judge_url=None,
) -> None:
    from tunesmith.config import load_config
    from tunesmith.eval.run import EvalSpec, run

    if not Path(data).exists():
        raise UsageError(f"--data {data} does not exist.", "Pass the hold-out file.")
    _preflight(out, adapter, reward, force)
    cfg = load_config(config)
    settings = cfg.eval.model_copy(update={"require": [*cfg.eval.require, *require]})
    if max_examples is not None:
        settings = settings.model_copy(update={"max_examples": max_examples})
    if max_new_tokens is not None:
        settings = settings.model_copy(update={"max_new_tokens": max_new_tokens})
    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    _preflight_work(
        Path(data), task, model or (cfg.model.name if config else None), adapter, names, settings, cfg
    )
    spec = EvalSpec(
        data=Path(data), out=Path(out), model=model or (cfg.model.name if config else None), adapter=adapter,
        train=train or (cfg.data.train if config else None), task=task, baselines=names, settings=settings,  # type: ignore[arg-type]
        rag_index=rag_index or cfg.rag.index, reward_run=reward, system_prompt=system_prompt or cfg.data.system_prompt,
        graders=tuple(Path(g) for g in [*cfg.eval.graders, *graders]), judge_url=judge_url or cfg.eval.judge_url,
    )  # fmt: skip
    with console.status("Evaluating...") as status:
        result = run(spec, on_progress=lambda e: _candidate_notice(status, e))
    render_report(result.report)
    console.print(f"Report: {Path(out) / 'report.html'}  (json: {Path(out) / 'report.json'})")
    if not result.gate_passed:
        raise TunesmithError(
            "The release gate failed (see the rules above).", "Improve the model or adjust --require."
        )


def _candidate_notice(status: Any, event: dict[str, Any]) -> None:
    """Which candidate the next progress lines belong to: the spinner on a terminal; with no terminal (a log,
    CI) the spinner is not drawn, so the line goes where the progress lines go (stderr)."""
    text = f"Evaluating {event['name']} on {event['n']} examples..."
    status.update(text)
    if not console.is_terminal:
        from tunesmith.cli.render import err_console

        err_console.print(text, highlight=False)


def _eval_llamacpp(
    engine, data, out, model, adapter, config, system_prompt, max_examples, max_new_tokens, gate_q4
) -> None:
    """``--engine llamacpp``: the GGUF against tunesmith's own answers of its run (``tunesmith.eval.parity``)."""
    from tunesmith.cli.parity_view import raise_if_failed, render_parity
    from tunesmith.config import load_config
    from tunesmith.eval.parity import ParitySpec, check_parity

    if engine != "llamacpp":
        raise UsageError(
            f"--engine {engine} is not known.", "Use --engine transformers or --engine llamacpp."
        )
    if model is None or not model.endswith(".gguf"):
        raise UsageError(
            "--engine llamacpp needs --model FILE.gguf.",
            "Export one: tunesmith export RUN --format gguf --out DIR",
        )
    if not Path(data).exists():
        raise UsageError(f"--data {data} does not exist.", "Pass the hold-out file.")
    cfg = load_config(config)
    settings = cfg.eval
    if max_examples is not None:
        settings = settings.model_copy(update={"max_examples": max_examples})
    if max_new_tokens is not None:
        settings = settings.model_copy(update={"max_new_tokens": max_new_tokens})
    spec = ParitySpec(gguf=Path(model), data=Path(data), run=adapter, settings=settings, out=Path(out),
                      system_prompt=system_prompt or cfg.data.system_prompt, gate_q4=gate_q4)  # fmt: skip
    with console.status(f"Comparing {model} (llama.cpp) with its run (tunesmith)..."):
        report = check_parity(spec)
    render_parity(console, report)
    console.print(f"Report: {Path(out) / 'parity.json'}")
    raise_if_failed(report)


def _preflight(out: Path, adapter: Path | None, reward: Path | None, force: bool = False) -> None:
    """Checks that take milliseconds, run before minutes of baseline generation: the runs to evaluate hold
    saved weights, the report folder is a folder that can be written and holds no earlier report (unless
    ``force``). Raises TunesmithError naming the problem."""
    from tunesmith.models.inference import locate_run_weights, run_folder_hint

    for flag, run in (("--adapter", adapter), ("--reward", reward)):
        if run is not None:
            if not Path(run).is_dir():
                raise UsageError(f"{flag} {run} is not a folder.", run_folder_hint(Path(run)))
            locate_run_weights(Path(run))
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file.", "Pass a folder for the report.")
    if (Path(out) / "report.json").exists() and not force:
        raise UsageError(
            f"--out {out} already holds an evaluation report (report.json); it is left untouched.",
            "Pass another --out folder, or --force to replace that report.",
        )
    probe = Path(out).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {out} cannot be written (no write permission on {probe}).",
            "Pass a folder you can write to, e.g. --out ./report",
        )


def _preflight_work(
    data: Path,
    task: Any,
    model: str | None,
    adapter: Path | None,
    baselines: tuple[str, ...],
    settings: Any,
    cfg: Any,
) -> None:
    """Before any model loads: the hold-out parses (errors name the file, line and field), and the models the
    evaluation holds at once fit the memory available (``models.memory.inference_bytes``).

    Raises:
        TunesmithError: for unusable data, or an estimate above the memory available, with what would fit.
    """
    from tunesmith.data.formats import load_records_or_raise
    from tunesmith.models.inference import run_base_model
    from tunesmith.models.memory import GB, inference_bytes
    from tunesmith.models.params import load_architecture
    from tunesmith.train.guards import available_memory
    from tunesmith.train.plan import CPU_RUNTIME

    load_records_or_raise(data, task)
    name = model or (run_base_model(adapter) if adapter else None) or "smollm2-135m-instruct"
    copies = (1 if baselines else 0) + (1 if adapter is not None else 0)
    avail = available_memory()
    if not copies or avail is None:
        return
    try:
        arch = load_architecture(name)
    except TunesmithError:
        return  # the model's own loading says what is wrong with it, in its words
    # refused only when the certain part cannot fit: the weights of every model held at once and the
    # runtime. The batch's part is an upper bound (prompts as long as data.max_seq_len), so it is said, not
    # held against the run: real prompts are usually far shorter (the demo peaks at 1.9 GB in all).
    need = copies * arch.total * 4 + CPU_RUNTIME
    tokens = cfg.data.max_seq_len + (settings.max_new_tokens or 0)
    batch = inference_bytes(arch, copies=0, batch=settings.batch_size, tokens=tokens)
    if need > avail:
        raise TunesmithError(
            f"Evaluating needs at least {need / GB:.1f} GB but {avail / GB:.1f} GB of memory is available: "
            f"{copies} cop{'ies' if copies > 1 else 'y'} of {name} ({arch.total / 1e6:,.0f}M parameters, fp32) "
            f"and the runtime; a batch of {settings.batch_size} answers adds up to {batch / GB:.1f} GB more.",
            "Evaluate one model at a time (--baselines '' with --adapter holds one copy), a smaller model, "
            "or free memory.",
        )


def render_report(report: EvalReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    cands = report.candidates
    # Vertical layout (issue 17): one column per candidate, one row per metric, so that at 80 columns a
    # candidate's name is never cut (base:zero-shot and base:few-shot must stay apart); names never wrap.
    if report.task == "preference":
        n_pairs = report.preference.n_pairs if report.preference else report.n
        rows = [(k, k, 3) for k in sorted({k for c in cands.values() for k in c.numbers()})]
        title = f"preference: {n_pairs} pairs"
    else:
        keys = [k for k in report.headline if any(c.metric(k) is not None for c in cands.values())]
        rows = [(k, k, 3) for k in keys] + [
            ("latency p50", "latency_ms.p50", "ms"),
            ("latency p95", "latency_ms.p95", "ms"),
            ("tokens/s", "tokens_per_s", 1),
            ("$ per 1k requests", "cost_per_1k_requests_usd", 4),
        ]
        title = f"{report.task}: {report.n} hold-out examples"
    table = Table("metric", title=title)
    for name in cands:
        add_name_column(table, name, justify="right")
    for label, key, fmt in rows:
        table.add_row(label, *[_fmt_metric(c.metric(key), fmt) for c in cands.values()])
    console.print(table)
    if report.applied is not None and report.task != "preference":
        console.print(f"metrics: {report.applied.reason}", highlight=False)
    if report.graders:
        _render_graders(report)
    for r in report.gate.rules:
        mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        console.print(f"{mark} {escape(r.rule)}", highlight=False)
    from tunesmith.eval.verdict import verdict_for

    # the sentence report.json and report.html open with (computed for reports written before it existed)
    console.print(f"[bold]Verdict:[/] {escape(report.verdict or verdict_for(report))}", highlight=False)


def _render_graders(report: EvalReport) -> None:
    """Each grader's mean / pass rate per candidate, pairwise verdicts, and each judge's calibration."""
    from rich.markup import escape
    from rich.table import Table

    from tunesmith.eval.judged import calibration_words

    cands = report.candidates
    table = Table("grader", title="graders (mean / pass rate)")
    for name in cands:
        add_name_column(table, name, justify="right")
    for g in report.graders:
        cells = [
            f"{_fmt(c.metric(f'grader.{g}'))} / {_fmt(c.metric(f'grader_pass_rate.{g}'))}"
            if c.metric(f"grader.{g}") is not None
            else "-"
            for c in cands.values()
        ]
        if any(x != "-" for x in cells):
            table.add_row(g, *cells)
    if table.rows:
        console.print(table)
    for g, info in report.graders.items():
        for other, v in (cands["finetuned"].metrics.get("pairwise", {}).get(g, {}) if "finetuned" in cands else {}).items():
            fp = "-" if v.get("first_position_rate") is None else f"{v['first_position_rate']:.2f}"
            console.print(
                f"{escape(g)}: finetuned vs {escape(other)}: win {v['win']:.2f}, tie {v['tie']:.2f}, loss {v['loss']:.2f} "
                f"(both orders; answer shown first chosen {fp}, orders agree {v['order_consistency']:.2f})",
                highlight=False,
            )
        line = f"{escape(g)}: {escape(str(info.get('model', info.get('type'))))}: {escape(calibration_words(info))}"
        console.print(line + (f" [yellow]({escape(info['note'])})[/]" if info.get("weak") else ""), highlight=False)
    for r in report.gate.rules:  # the gate's own lines name the rule; the judge's reason is said here
        if not r.passed and r.message.startswith("judge '"):
            console.print(f"[red]{escape(r.rule)}[/]: {escape(r.message)}", highlight=False)


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:,.{digits}f}"


def _fmt_metric(x: Any, fmt: int | str) -> str:
    """A metric cell: ``fmt`` digits, or ``"ms"`` for a latency (whole milliseconds, thousands separated)."""
    if fmt == "ms":
        return "-" if not isinstance(x, int | float) else f"{x:,.0f} ms"
    return _fmt(x, int(fmt))


def add_name_column(table: Any, name: str, **kw: Any) -> None:
    """Add a column headed by a candidate's or run's name: the header is never cut or wrapped."""
    table.add_column(name, no_wrap=True, min_width=len(name), **kw)


def compare_cmd(
    paths: list[Path] = typer.Argument(
        ..., help="report.json files, eval --out folders, demo folders or run folders."
    ),
) -> None:
    """Put evaluation reports and training runs side by side."""
    from rich.table import Table

    from tunesmith.eval.compare import compare

    comp = compare(list(paths))
    cells = [
        [
            _fmt_metric(v, "ms" if key.startswith("latency_ms") else 3)
            if isinstance(v, float)
            else ("-" if v is None else str(v))
            for v in vals
        ]
        for key, vals in comp.rows
    ]
    # As many report columns per table as fit the terminal; the rest follow in further tables, so that a
    # column's name (which report, which candidate) is never cut.
    key_width = min(max((len(k) for k, _ in comp.rows), default=6), 32) + 3
    widths = [max([len(c), *(len(r[i]) for r in cells)]) + 3 for i, c in enumerate(comp.columns)]
    groups: list[list[int]] = [[]]
    used = key_width + 1
    for i, w in enumerate(widths):
        if groups[-1] and used + w > console.width:
            groups.append([])
            used = key_width + 1
        groups[-1].append(i)
        used += w
    for group in groups:
        table = Table()
        table.add_column("metric", overflow="fold")
        for i in group:
            add_name_column(table, comp.columns[i], justify="right")
        for (key, _), row in zip(comp.rows, cells, strict=True):
            table.add_row(key, *[row[i] for i in group])
        console.print(table)


def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the data, the run and the report."),
    quick: bool = typer.Option(
        False, "--quick", help="Smaller data and fewer steps (about 3 minutes instead of 15)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Base model (default: the example config's, SmolLM2-135M)."
    ),
) -> None:
    """The main job end to end: check data, split, prompted baselines, LoRA fine-tune, evaluate, report."""
    from rich.table import Table

    from tunesmith.workflows.demo import run

    def on_stage(name: str, state: str) -> None:
        if state == "start":
            console.print(f"[bold]>[/] {name} ...", highlight=False)
        elif state != "done":
            console.print(f"    {state}", highlight=False)

    result = run(out, quick=quick, model=model, on_stage=on_stage)
    render_report(result.report)
    cands = result.report.candidates
    table = Table(title="Prompted baseline vs fine-tuned (hold-out)")
    table.add_column("")
    for name in cands:
        add_name_column(table, name, justify="right")
    for label, get in [
        ("accuracy (answer)", lambda c: _fmt(c.metric("accuracy"))),
        ("accuracy (label log-likelihood)", lambda c: _fmt(c.metric("label_scoring.accuracy"))),
        ("macro-F1", lambda c: _fmt(c.metric("macro_f1"))),
        ("consistency", lambda c: _fmt(c.metric("consistency"))),
        (
            "latency p50 / p95",
            lambda c: f"{_fmt(c.metric('latency_ms.p50'), 0)} / {_fmt(c.metric('latency_ms.p95'), 0)} ms",
        ),
        ("$ per 1k requests", lambda c: _fmt(c.metric("cost_per_1k_requests_usd"), 4)),
    ]:
        table.add_row(label, *[get(c) for c in cands.values()])
    console.print(table)
    stages = Table(title="Time per stage")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for name, sec in result.stages:
        stages.add_row(name, f"{sec:.1f}")
    stages.add_row("[bold]total[/]", f"[bold]{sum(s for _, s in result.stages):.1f}[/]")
    console.print(stages)
    console.print(f"Report: {result.out / 'report' / 'report.html'}")
    if not result.gate_passed:
        console.print("[red]The fine-tuned model did not clear the demo's gate.[/]")
        sys.exit(1)
