"""`tunesmith estimate` (memory, time, cost, with an optional measured probe) and `tunesmith plan`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tunesmith.cli.render import console
from tunesmith.errors import UsageError


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("estimate")(estimate_cmd)
    app.command("plan")(plan_cmd)


def estimate_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        help="Alias (tiny, smollm2-135m-instruct), model folder, any "
        "config.json, or a size class: 1b 3b 7b 8b 13b 70b (or llama-3.1-70b, mistral-7b...).",
    ),
    method: str = typer.Option("lora", "--method", help="full | lora | qlora | dora"),
    data: Path | None = typer.Option(
        None, "--data", help="Training file: tokens are counted with the model's chat template."
    ),
    examples: int | None = typer.Option(None, "--examples", help="Number of examples (instead of --data)."),
    avg_tokens: float | None = typer.Option(
        None, "--avg-tokens", help="Average tokens per example (with --examples)."
    ),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the data."),
    gpu: list[str] = typer.Option(
        [], "--gpu", help="Only these GPUs (repeatable; names from the price sheet, or cpu)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Sequences per micro-batch (activation memory)."),
    seq_len: int | None = typer.Option(
        None,
        "--seq-len",
        help="Tokens per sequence for activation memory (default: the longest example, or 2x --avg-tokens).",
    ),
    gradient_checkpointing: bool = typer.Option(
        False,
        "--gradient-checkpointing/--no-gradient-checkpointing",
        help="Recompute activations in backward (less memory, ~1/3 more FLOPs).",
    ),
    r: int = typer.Option(16, "--lora-r", help="LoRA rank."),
    mfu: float | None = typer.Option(
        None, "--mfu", help="GPU utilisation (model FLOPs utilisation), default 0.4."
    ),
    prices: Path | None = typer.Option(
        None, "--prices", help="JSON/YAML file merged over the built-in price sheet."
    ),
    probe: bool = typer.Option(
        False, "--probe", help="Run a few real training steps here and calibrate the CPU estimate."
    ),
    probe_steps: int = typer.Option(3, "--probe-steps", help="Measured steps in the probe."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"params", "memory_gb", "fits", "fits_with", "flops", "hours", "cost_usd"}; fits_with '
        "names, per GPU, the settings that make it fit with the memory and time of each.",
    ),
) -> None:
    """Will it fit, how long, how much: memory breakdown, fit per GPU, FLOPs, hours and dollars, API
    fine-tuning prices and the break-even against a prompted frontier API."""
    from tunesmith.advisor.run import EstimateRequest, run_estimate

    if method not in ("full", "lora", "qlora", "dora"):
        raise UsageError(
            f"--method {method!r} is not one of full, lora, qlora, dora.", "Example: --method qlora"
        )
    if data is None and (examples is None or avg_tokens is None):
        raise UsageError(
            "Give --data FILE, or both --examples N and --avg-tokens T.",
            "Example: tunesmith estimate --model 7b --method lora --examples 2000 --avg-tokens 350",
        )
    if epochs <= 0 or batch_size < 1 or r < 1 or (mfu is not None and not 0 < mfu <= 1):
        raise UsageError("--epochs must be > 0, --batch-size and --lora-r >= 1, --mfu in (0, 1].")
    req = EstimateRequest(
        model=model,
        method=method,
        data=data,
        examples=examples,
        avg_tokens=avg_tokens,
        epochs=epochs,
        gpus=list(gpu),
        batch_size=batch_size,
        seq_len=seq_len,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=r,
        mfu=mfu,
        prices=prices,
        probe=probe,
        probe_steps=probe_steps,
    )
    est = run_estimate(req)
    if as_json:
        typer.echo(json.dumps(est.to_json(), indent=2))
        return
    render_estimate(est)


def plan_cmd(
    config: Path = typer.Argument(..., help="Project config (tunesmith.yaml)."),
    sample: int = typer.Option(20, "--sample", help="Hold-out examples the baselines are measured on."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Should you prompt, retrieve, or fine-tune? Inspects the data, measures prompted baselines on a
    hold-out sample, and recommends with reasons, cost, time and the data still needed."""
    from tunesmith.advisor.plan import run as run_plan
    from tunesmith.config import load_config

    cfg = load_config(config)
    result = run_plan(cfg, sample=sample)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    render_plan(result)


# --------------------------------------------------------------------------- rendering


def _gb(x: float) -> str:
    return f"{x:,.2f} GB" if x < 100 else f"{x:,.0f} GB"


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:,.1f} s"
    if h < 1:
        return f"{h * 60:,.1f} min"
    return f"{h:,.1f} h" if h < 100 else f"{h:,.0f} h"


def _render_levers(est) -> None:
    from rich.table import Table

    shown = [a for a in est.fit_advice if not a.fits_as_given]
    if not shown:
        return
    t = Table(title="Settings that make it fit (applied in order, cheapest in time first; advisor/levers.py)")
    for col in ("GPU", "setting", "memory with it", "time", "time x"):
        t.add_column(col, justify="left" if col in ("GPU", "setting") else "right")
    for a in shown:
        if not a.fits:
            t.add_row(a.gpu, "[red]no setting makes it fit[/] (all of them)", _gb(a.memory_gb), "-", "-")
            continue
        for s in a.levers:
            t.add_row(a.gpu, s.setting, _gb(s.memory_gb), _hours(s.hours), f"{s.time_factor:.2f}")
    console.print(t)


def render_estimate(est) -> None:
    from rich.table import Table

    w, s, m = est.workload, est.setup, est.memory
    console.print(f"[bold]{est.model}[/] · {s.method} · {w.source}")
    console.print(
        f"Parameters: {est.params_total:,} total ({est.params_embedding:,} embedding, "
        f"{est.params_total - est.params_embedding:,} non-embedding); trainable {est.params_trainable:,} "
        f"({100 * est.params_trainable / est.params_total:.2f}%)"
    )
    ck = "with" if s.gradient_checkpointing else "without"
    t = Table(title=f"Memory: micro-batch {s.batch_size} x {s.seq_len} tokens, {ck} gradient checkpointing")
    t.add_column("part")
    t.add_column("GPU (bf16 mixed precision)", justify="right")
    t.add_column("this CPU (fp32)", justify="right")
    c = est.memory_cpu
    rows = [
        ("weights" + (" (4-bit NF4 base)" if s.method == "qlora" else ""), m.weights, c.weights),
        ("  of which LoRA adapters" if s.method != "full" else None, m.lora, c.lora),
        ("gradients", m.gradients, c.gradients),
        ("optimizer (AdamW)", m.optimizer, c.optimizer),
        ("activations", m.activations, c.activations),
        (
            f"  activations {'without' if s.gradient_checkpointing else 'with'} checkpointing",
            m.activations_other,
            c.activations_other,
        ),
        ("total", m.total, c.total),
    ]
    for name, g, cpu in rows:
        if name:
            t.add_row(name, _gb(g), _gb(cpu))
    console.print(t)
    g = Table(title="Fit, time and cost per GPU")
    for col in ("GPU", "memory", "fits", "headroom", "time", "cost"):
        g.add_column(col, justify="left" if col in ("GPU", "fits") else "right")
    advice = {a.gpu: a for a in est.fit_advice}
    for r in est.gpus:
        a = advice.get(r.name)
        if r.fits:
            fits = "[green]yes[/]"
        elif a is not None and a.fits:
            fits = f"[yellow]with {', '.join(s.lever for s in a.levers)}[/] (time x{a.levers[-1].time_factor:.2f})"
        else:
            fits = "[yellow]with --gradient-checkpointing[/]" if r.fits_with_checkpointing else "[red]no[/]"
        cost = "-" if r.name == "cpu" else f"${r.cost_usd:,.2f}"
        g.add_row(r.name, _gb(r.memory_gb), fits, _gb(r.headroom_gb), _hours(r.hours), cost)
    console.print(g)
    _render_levers(est)
    console.print(f"Training compute: {est.flops:.3g} FLOPs; {est.flops_formula}.")
    util = est.assumptions.get("utilisation", "").split(":")[0]
    console.print(
        f"Time = FLOPs / (peak bf16 FLOP/s x utilisation {s.mfu or util}); CPU: measured fp32 matmul peak "
        f"x {est.assumptions.get('cpu_utilisation', '').split(':')[0]}."
    )
    if est.api_costs:
        console.print(
            "API fine-tuning (training tokens x price): "
            + ", ".join(f"{k} ${v:,.2f}" for k, v in est.api_costs.items())
        )
    sv = est.serving
    if sv:
        console.print(
            f"Serving: self-hosted on {sv.gpu} ~{sv.tokens_per_s:,.0f} tokens/s, ${sv.usd_per_1m_tokens:,.2f} per 1M "
            f"output tokens, ${sv.gpu_usd_per_month:,.0f}/month always on. Prompted {sv.frontier}: "
            f"${sv.frontier_usd_per_request * 1000:,.2f} per 1,000 requests (self-hosted "
            f"${sv.selfhost_usd_per_request * 1000:,.3f}). "
            f"Break-even: {sv.breakeven_requests_per_month:,.0f} requests/month (one GPU serves up to "
            f"{sv.capacity_requests_per_month:,.0f})."
            + (
                " One GPU cannot serve the break-even volume: add GPUs or stay on the API."
                if sv.breakeven_requests_per_month > sv.capacity_requests_per_month
                else ""
            )
        )
    if est.calibration:
        cal = est.calibration
        console.print(
            f"[bold]Probe[/]: {cal['steps']} measured steps at {cal['tokens_per_s']:,.1f} tokens/s "
            f"({cal['seconds_per_step']:.3f} s/step, setup {cal['setup_s']:.1f} s). Calibrated CPU time for this run: "
            f"{_hours(cal['calibrated_hours'])} (uncalibrated estimate was {_hours(cal['uncalibrated_hours'])}, "
            f"error {cal['uncalibrated_error_pct']:+.0f}%)."
        )


def render_plan(result) -> None:
    console.print(result.render_text())
