"""`tunesmith train`, `export`, `runs list|show|rm` and `chat`: rendering only; the work is in tunesmith.train."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import typer

from tunesmith.errors import TunesmithError

runs_app = typer.Typer(
    help="List, inspect and remove training runs (SQLite registry in the runs folder).", no_args_is_help=True
)

_RUNS_DIR_HELP = "Runs folder holding registry.sqlite (default: $TUNESMITH_RUNS_DIR or ./runs)."


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.add_typer(runs_app, name="runs")
    app.command("chat")(chat_command)


def train_command(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    overrides: list[str] = typer.Argument(
        None, help="Dotted overrides, e.g. train.lr=1e-4 train.max_steps=50."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue this run folder from its last complete checkpoint."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Train on the valid lines of data that has `data check` errors, and despite chat-template "
        "findings (eos_not_trained, tool_calls_dropped, tools_dropped, system_prompt_dropped).",
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Processes for data-parallel training via torchrun (gloo on CPU, NCCL on GPU): DDP, or FSDP2 "
        "sharding when train.distributed says so (docs/scaling.md).",
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="local (this machine) or openai (any OpenAI-compatible fine-tuning API, via --base-url).",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="With --backend openai: the API, e.g. http://127.0.0.1:8000/v1."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="OPENAI_API_KEY", help="With --backend openai: the bearer key."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="With --backend openai: folder for the hold-out evaluation report."
    ),
) -> None:
    """Fine-tune a model (sft/cpt with full, lora, qlora or dora; dpo/reward; ppo/rloo/grpo). Ctrl-C saves and stops."""
    from tunesmith.config import load_config
    from tunesmith.errors import UsageError

    if backend not in ("local", "openai"):
        raise UsageError(f"--backend {backend!r} is not known.", "Use --backend local or --backend openai.")
    if backend == "openai":
        if not base_url:
            raise UsageError(
                "--backend openai needs --base-url.", "Example: --base-url http://127.0.0.1:8000/v1"
            )
        from tunesmith.cli.serve_cmd import remote_train

        remote_train(config, overrides or [], base_url=base_url, api_key=api_key, out=out)
        return
    cfg = load_config(config, overrides or [])
    from transformers.utils import logging as hf_logging

    from tunesmith.cli.render import console
    from tunesmith.train.api import train

    hf_logging.disable_progress_bar()  # our bar is the progress; "Loading weights" bars would interleave

    stop = _StopFlag()
    with _progress(console) as on_progress:
        previous = signal.signal(signal.SIGINT, stop.handle)
        try:
            if nproc > 1:  # the workers get Ctrl-C too (same process group) and save before stopping
                from tunesmith.train.distributed import launch

                result = launch(
                    config, overrides or [], nproc, resume=resume, force=force, on_progress=on_progress
                )
            else:
                result = train(cfg, resume=resume, force=force, on_progress=on_progress, should_stop=stop)
        finally:
            signal.signal(signal.SIGINT, previous)
    _print_result(console, result, config)


def _print_result(console: Any, result: Any, config: Path) -> None:
    """The finished run in a few lines; a stopped run says how to continue it where its method allows."""
    from tunesmith.results.run import LoopExtras
    from tunesmith.train.runs import supports_resume

    s = result.summary
    console.print(
        f"[bold]{s.status}[/] run [cyan]{result.run_dir}[/] after {s.steps} steps in {s.wall_time_s or 0:.1f} s"
        # peak_memory_mb is MiB (ru_maxrss); GB here is 10^9 bytes, like the plan's memory line below
        f" (peak memory {(s.peak_memory_mb or 0) * 2**20 / 1e9:.2f} GB, allocator {s.allocator or 'system'})"
    )
    rows = [
        ("train loss", s.first_train_loss, s.final_train_loss),
        ("hold-out loss", s.first_val_loss, s.final_val_loss),
    ]
    for name, first, last in rows:
        if last is not None:
            console.print(f"  {name}: {_f(first)} -> {_f(last)}")
    extras = s.extras if isinstance(s.extras, LoopExtras) else None
    if s.best_val_loss is not None:
        weights = getattr(s.extras, "weights", None)  # sft/cpt, dpo and reward (tunesmith's loop) record it
        console.print(
            f"  best hold-out loss {_f(s.best_val_loss)} at step {s.best_step}; saved weights: {weights}"
        )
    plan = getattr(s.extras, "plan", None)
    if plan is not None:
        m = plan.memory
        console.print(
            f"  memory: micro-batch {m.micro_tokens} tokens, estimated {m.estimate_gb:.2f} GB, measured peak "
            f"{'-' if m.measured_peak_gb is None else f'{m.measured_peak_gb:.2f}'} GB of a {m.budget_gb:.2f} GB budget"
        )
    if extras is not None and extras.forgetting is not None:
        fg = extras.forgetting
        console.print(f"  forgetting probe loss {fg.before:.4f} -> {fg.after:.4f} ({fg.increase:+.1%})")
    if s.status == "stopped":
        if supports_resume(s.method):
            console.print(
                f"  checkpoint saved; continue with: tunesmith train {config} --resume {result.run_dir}"
            )
        else:
            console.print(
                f"  the weights at the stop are saved in {result.run_dir}; method: {s.method} runs cannot be"
                " resumed, so to train further start a new run"
            )


def export_command(
    run: Path = typer.Argument(..., help="Run folder (runs/<id>) or adapter folder."),
    fmt: str = typer.Option(
        "merged",
        "--format",
        help="merged (safetensors for transformers), gguf (llama.cpp/Ollama, with a Modelfile) or vllm "
        "(the adapter folder and its `vllm serve` command).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (created; must be new or empty)."),
    merged: Path | None = typer.Option(
        None,
        "--merged",
        help="Output folder for the merged safetensors model (same as --format merged --out).",
    ),
    quant: str = typer.Option("f16", "--quant", help="With --format gguf: f16, q8_0 or q4_k_m."),
    model: str | None = typer.Option(None, "--model", help="Base model (default: the run's base_model)."),
    system: str | None = typer.Option(
        None,
        "--system",
        help="With --format gguf: the Modelfile's SYSTEM (default: the system prompt the run was trained with).",
    ),
    no_modelfile: bool = typer.Option(
        False, "--no-modelfile", help="With --format gguf: write the GGUF only (no Ollama Modelfile)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="With --format vllm: the model name clients ask for (default: the run id)."
    ),
    verify: Path | None = typer.Option(
        None,
        "--verify",
        help="With --format gguf: run this hold-out through the GGUF (llama.cpp) and the run (tunesmith) and "
        "compare; exit 1 when the quant's parity gate fails.",
    ),
    gate_q4: bool = typer.Option(
        False,
        "--gate-q4",
        help="With --verify and q4_k_m: gate the metric (within 1 point), not only report.",
    ),
    max_examples: int | None = typer.Option(
        None, "--max-examples", min=1, help="With --verify: the first N hold-out examples only."
    ),
) -> None:
    """Export a run: merged safetensors, a GGUF for llama.cpp/Ollama (checked with --verify), or a vLLM adapter."""
    from tunesmith.cli.render import console
    from tunesmith.errors import UsageError

    if merged is not None:
        if out is not None and out != merged:
            raise UsageError("Give --merged OUT or --out OUT, not both.", "Use --format merged --out OUT.")
        fmt, out = "merged", merged
    if fmt not in ("merged", "gguf", "vllm"):
        raise UsageError(f"--format {fmt} is not known.", "Use --format merged, gguf or vllm.")
    if out is None:
        raise UsageError(
            "Where to? --out is missing.", f"Example: tunesmith export {run} --format {fmt} --out exported/"
        )
    if fmt != "gguf" and (verify is not None or no_modelfile or system is not None or quant != "f16"):
        raise UsageError(
            "--quant, --system, --no-modelfile and --verify apply to --format gguf only.", "Drop them."
        )
    if fmt == "merged":
        from tunesmith.train.export import export_merged

        console.print(f"merged model written to [cyan]{export_merged(run, out, model)}[/]")
    elif fmt == "vllm":
        from tunesmith.train.export_vllm import export_vllm

        v = export_vllm(run, out, name=name, base_model=model)
        console.print(
            f"vLLM adapter written to [cyan]{v.adapter}[/] (rank {v.rank}, {', '.join(v.target_modules)})"
        )
        console.print(f"serve it with ({out / 'serve.sh'}):\n{v.command}", soft_wrap=True, highlight=False)
    else:
        _export_gguf(console, run, out, quant, model, system, no_modelfile, verify, gate_q4, max_examples)


def _export_gguf(
    console, run, out, quant, model, system, no_modelfile, verify, gate_q4, max_examples
) -> None:
    from tunesmith.train.export_gguf import export_gguf

    if system is None:
        system = run_system_prompt(run)
    with console.status(f"Exporting {run} as GGUF ({quant})..."):
        g = export_gguf(run, out, quant=quant, base_model=model, system_prompt=system or None,
                        modelfile=not no_modelfile)  # fmt: skip
    console.print(f"GGUF written to [cyan]{g.gguf}[/] ({g.size_bytes / 1e6:,.1f} MB, {quant})")
    if g.modelfile is not None:
        console.print(f"Ollama: ollama create NAME -f {g.modelfile}", highlight=False)
    if verify is not None:
        from tunesmith.cli.parity_view import raise_if_failed, render_parity
        from tunesmith.eval.parity import ParitySpec, check_parity

        settings = _eval_settings(max_examples)
        with console.status(f"Comparing the GGUF with the run on {verify}..."):
            report = check_parity(ParitySpec(gguf=g.gguf, data=verify, run=run, base_model=model,
                                             settings=settings, gate_q4=gate_q4, out=out))  # fmt: skip
        render_parity(console, report)
        raise_if_failed(report)


def _eval_settings(max_examples: int | None) -> Any:
    from tunesmith.config import EvalConfig

    s = EvalConfig()
    return s.model_copy(update={"max_examples": max_examples}) if max_examples else s


@runs_app.command("list")
def runs_list(
    runs_dir: Path | None = typer.Option(None, "--dir", help=_RUNS_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Every recorded run, oldest first; a run whose process died mid-training shows as interrupted."""
    from rich.table import Column, Table

    from tunesmith.cli.render import console
    from tunesmith.train.registry import RunRegistry, shown_status
    from tunesmith.train.runs import supports_resume

    records = RunRegistry(_runs_dir(runs_dir)).list()
    statuses = [shown_status(r) for r in records]
    if as_json:
        rows = [
            {**{k: v for k, v in r.__dict__.items() if k != "summary"}, "status": st}
            for r, st in zip(records, statuses, strict=True)
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    # final_loss/best_loss come from each run's RunSummary (final_train_loss, best_val_loss).
    # 80 columns: the run id and the status are never cut (the id is what `eval`, `runs show` and --resume
    # need); method + finetune and the base model go on lines under the id; the other columns wrap.
    width = max((len(r.run_id) for r in records), default=3)
    table = Table(
        Column("run", no_wrap=True, min_width=width),
        Column("status", no_wrap=True),
        Column("created", overflow="fold"),
        Column("train loss", overflow="fold"),
        Column("best hold-out", overflow="fold"),
    )
    for r, st in zip(records, statuses, strict=True):
        table.add_row(
            f"{r.run_id}\n[dim]{r.method} {r.finetune}\n{r.base_model}[/]",
            st,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            _f(r.final_loss),
            _f(r.best_loss),
        )
    console.print(table if records else "no runs recorded yet")
    for r, st in zip(records, statuses, strict=True):
        if st == "interrupted":
            how = (
                f"continue with: tunesmith train {Path(r.run_dir) / 'config.resolved.yaml'} --resume {r.run_dir}"
                if supports_resume(r.method)
                else "its method cannot be resumed; start a new run"
            )
            console.print(
                f"{r.run_id}: interrupted (its process is gone without finishing); {how}", soft_wrap=True
            )


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="Run id (folder name)."),
    runs_dir: Path | None = typer.Option(None, "--dir", help=_RUNS_DIR_HELP),
) -> None:
    """The run's record and summary as JSON."""
    from tunesmith.results.run import read_run_summary
    from tunesmith.train.registry import RunRegistry

    r = RunRegistry(_runs_dir(runs_dir)).get(run_id)
    summary = r.summary
    summary_file = Path(r.run_dir) / "summary.json"
    if summary is None and summary_file.exists():
        summary = read_run_summary(summary_file)
    shown = summary.model_dump(mode="json") if summary is not None else None
    typer.echo(
        json.dumps({**{k: v for k, v in r.__dict__.items() if k != "summary"}, "summary": shown}, indent=1)
    )


@runs_app.command("rm")
def runs_rm(
    run_id: str = typer.Argument(..., help="Run id (folder name)."),
    runs_dir: Path | None = typer.Option(None, "--dir", help=_RUNS_DIR_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a run folder and its registry record."""
    from tunesmith.cli.render import console
    from tunesmith.train.registry import RunRegistry, shown_status

    registry = RunRegistry(_runs_dir(runs_dir))
    r = registry.get(run_id)
    if shown_status(r) == "running":  # an interrupted run (its process gone) may be removed
        raise TunesmithError(
            f"Run {run_id} is recorded as running.",
            "Stop it first (Ctrl-C or the server's cancel).",
        )
    folder = Path(r.run_dir)
    if not yes and not typer.confirm(f"Delete {folder}?"):
        raise typer.Abort()
    if folder.exists():
        shutil.rmtree(folder)
    registry.remove(run_id)
    console.print(f"removed {run_id}")


def run_system_prompt(run_dir: Path) -> str | None:
    """The system prompt a run was trained with: ``data.system_prompt`` of its ``config.resolved.yaml``,
    else the one generated from its training data (classification and extraction tables get one; see
    ``data.formats.default_system_prompt``). None when the run had none, or its config or data cannot be
    read any more (chat then starts without one)."""
    from tunesmith.config import load_config
    from tunesmith.data.formats import Columns, default_system_prompt, load_data

    cfg_file = run_dir / "config.resolved.yaml"
    if not cfg_file.is_file():
        return None
    try:
        d = load_config(cfg_file).data
        if d.system_prompt or d.train is None:
            return d.system_prompt
        loaded = load_data(d.train, d.task, Columns(d.text_field, d.label_field, d.fields_field))
        return default_system_prompt(loaded.rows, loaded.task) if loaded.task else None
    except (TunesmithError, OSError):
        return None


def chat_command(
    target: str = typer.Argument(..., help="A run folder (runs/<id>), a model folder or a model alias."),
    system: str | None = typer.Option(
        None,
        "--system",
        help="System prompt (default for a run folder: the one the run was trained with; --system '' for none).",
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Answer length limit."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    tools_file: Path | None = typer.Option(
        None,
        "--tools",
        help="JSON file with OpenAI tool definitions, rendered into every prompt by the model's chat template "
        "(its calls are shown; answer one with /tool RESULT).",
    ),
) -> None:
    """Chat with a base or fine-tuned model in the terminal (/reset clears the history, /exit quits)."""
    from rich.markup import escape

    from tunesmith.cli.render import console
    from tunesmith.models.generate import GenerationSettings, generate
    from tunesmith.models.inference import load_for_inference

    path = Path(target)
    is_run = path.is_dir() and (
        (path / "adapter").is_dir() or (path / "model").is_dir() or (path / "adapter_config.json").exists()
    )
    model, tokenizer = load_for_inference(None, path) if is_run else load_for_inference(target)
    tools = _chat_tools(tokenizer, tools_file) if tools_file is not None else None
    settings = GenerationSettings(max_tokens=max_tokens, temperature=temperature)
    if is_run and system is None:
        system = run_system_prompt(path)
        if system:
            console.print(f"system prompt (the run's): {escape(system)}", soft_wrap=True)
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    console.print(f"chatting with [cyan]{target}[/]; /reset clears the history, /exit quits")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            history = history[:1] if system else []
            continue
        if not line.strip():
            continue
        if line.startswith("/tool"):  # the result of the model's last tool call
            call_id = _last_call_id(history)
            if call_id is None:
                console.print("[yellow]/tool answers a tool call; the model has not made one[/]")
                continue
            history.append({"role": "tool", "tool_call_id": call_id, "content": line[len("/tool") :].strip()})
        else:
            history.append({"role": "user", "content": line})
        answer = generate(model, tokenizer, [history], settings, tools=tools)[0]
        history.append(_assistant_turn(tokenizer, answer.text, tools, turn=len(history)))
        for call in history[-1].get("tool_calls", []):
            fn = call["function"]
            console.print(f"[green]model>[/] calls {escape(fn['name'])}({escape(fn['arguments'])})")
        if history[-1]["content"] or not history[-1].get("tool_calls"):
            console.print(f"[green]model>[/] {escape(history[-1]['content'])}", highlight=False)
        console.print(f"[dim]{answer.completion_tokens} tokens, {answer.tokens_per_s:.1f} tok/s[/]")


def _chat_tools(tokenizer: Any, tools_file: Path) -> list[dict[str, Any]]:
    """The tools of ``--tools``, refused when the model's template would not show them to the model."""
    from tunesmith.data.render import supports_tools
    from tunesmith.data.toolcalls import load_tools_file

    tools = load_tools_file(tools_file)
    if not supports_tools(tokenizer):
        raise TunesmithError(
            "This model's chat template does not support tools: it does not write them into the prompt.",
            "Chat without --tools, or use a model whose chat template renders tools (Qwen 2.5, Llama 3.1, ...).",
        )
    return tools


def _assistant_turn(
    tokenizer: Any, text: str, tools: list[dict[str, Any]] | None, turn: int = 0
) -> dict[str, Any]:
    """The answer as a history turn: with tools, the calls it makes as ``tool_calls`` (OpenAI's shape;
    ids ``call_<turn>_<i>``, unique in the conversation)."""
    if not tools:
        return {"role": "assistant", "content": text}
    from tunesmith.data.toolcalls import parse_tool_calls, tool_call_family

    parsed = parse_tool_calls(text, tool_call_family(tokenizer))
    if not parsed.calls:
        return {"role": "assistant", "content": text}
    calls = [
        {
            "id": f"call_{turn}_{i}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments_json()},
        }
        for i, c in enumerate(parsed.calls)
    ]
    return {"role": "assistant", "content": parsed.content, "tool_calls": calls}


def _last_call_id(history: list[dict[str, Any]]) -> str | None:
    """The id of the last call of the model's last turn that has no result yet."""
    answered = {m.get("tool_call_id") for m in history if m["role"] == "tool"}
    for m in reversed(history):
        if m["role"] == "assistant":
            ids = [c["id"] for c in m.get("tool_calls", []) if c["id"] not in answered]
            return ids[0] if ids else None
    return None


# --------------------------------------------------------------------------- helpers


class _StopFlag:
    """First Ctrl-C asks the loop to save and stop after the current step; a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        from tunesmith.cli.render import err_console

        err_console.print("[yellow]stopping: saving a checkpoint after this step (Ctrl-C again to abort)[/]")

    def __call__(self) -> bool:
        return self.requested


class _progress:
    """A rich progress bar fed by the training callback (loss, tokens/s, ETA); plain lines when not a TTY."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def __enter__(self):  # noqa: ANN204
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.task = self.bar.add_task("train", total=None, info="")
        self.bar.__enter__()
        return self.on_event

    def on_event(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "start":
            self.bar.update(self.task, total=e["total_steps"], completed=e["step"])
        elif kind == "step":
            info = f"loss {_f(e['loss'])}  {e.get('tokens_per_s') or 0:,.0f} tok/s  lr {e['lr']:.2e}"
            self.bar.update(self.task, completed=e["step"], info=info)
            if not self.console.is_terminal:
                eta = e.get("eta_s")
                self.console.print(
                    f"step {e['step']}/{e['total_steps']} {info}"
                    + (f"  eta {eta:.0f}s" if eta is not None else ""),
                    highlight=False,
                )
        elif kind == "eval":
            self.console.print(
                f"step {e['step']}: hold-out loss {_f(e['val_loss'])} (best {_f(e['best_val_loss'])})",
                highlight=False,
            )
        elif kind == "plan":
            self.console.print(plan_lines(e), highlight=False)
        elif kind in ("replan", "oom"):
            why = "measured peak" if kind == "replan" else "out of memory: step retried"
            self.console.print(
                f"[yellow]memory plan: micro-batch {e['micro_tokens_before']} -> {e['micro_tokens']} tokens ({why})[/]",
                highlight=False,
            )
        elif kind == "truncated":  # dpo/reward: pairs cut prompt first to data.max_seq_len
            self.console.print(
                f"[yellow]{e['pairs']} pair(s) longer than data.max_seq_len={e['max_seq_len']} were cut "
                "(prompt first)[/]",
                highlight=False,
            )
        elif kind == "checkpoint_skipped":
            from rich.markup import escape

            self.console.print(
                f"[yellow]skipped damaged checkpoint: {escape(e['reason'])}; resuming from {escape(e['resume_from'])}[/]",
                highlight=False,
            )

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


def plan_lines(plan: dict[str, Any]) -> str:
    """The run's plan in a few lines: each chosen value and where it came from."""
    m, rule = plan["memory"], plan.get("rule", {})
    per_step = plan["examples_per_step"]
    batch = f"{per_step} examples per step" if per_step else "token-sized steps"
    return "\n".join(
        [
            f"plan: {batch} ({rule.get('batch_size', '')}), {plan['epochs']:g} epochs ({rule.get('epochs', '')}), "
            f"{plan['total_steps']} steps",
            f"  lr {plan['lr']:g} ({rule.get('lr', '')}), warmup {plan['warmup_steps']} steps",
            f"  memory: budget {m['budget_gb']:.2f} GB ({m['budget_source']}); micro-batch {m['micro_tokens']} tokens "
            f"({m['micro_tokens_reason']}), gradient checkpointing {'on' if m['gradient_checkpointing'] else 'off'}, "
            f"estimated peak {m['estimate_gb']:.2f} GB",
        ]
    )


def _runs_dir(runs_dir: Path | None) -> Path:
    return runs_dir or Path(os.environ.get("TUNESMITH_RUNS_DIR", "runs"))


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
