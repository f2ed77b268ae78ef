"""``tunesmith demo``: the main job, end to end, on a bundled business example.

    generate tickets (seeded, examples/support_tickets/generate.py) -> data check -> stratified split
    -> prompted baselines (zero-shot, few-shot) -> LoRA fine-tune of SmolLM2-135M -> evaluate fine-tuned
    -> gate + report (report.json, report.html) -> a table of baseline vs fine-tuned, with stage times

The example: Northwind Cloud routes support tickets to four queues under an escalation policy no prompt
states (Enterprise plan, legal threats, chargebacks and team-wide outages go to ``priority`` whatever the
topic; "urgent" alone does not). That is what fine-tuning is for: behaviour learnt from examples that a
prompted general model cannot guess. The training settings live in ``examples/support_tickets/tunesmith.yaml``;
``--quick`` shrinks data and steps to fit CI's three minutes.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig, load_config
from tunesmith.errors import TunesmithError
from tunesmith.results.eval import EvalReport, write_eval_report

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "support_tickets"
GATE = [
    "finetuned.accuracy>base:few-shot.accuracy",
    "finetuned.label_scoring.accuracy>base:few-shot.label_scoring.accuracy",
    "finetuned.accuracy>=0.75",
]


@dataclass(frozen=True)
class DemoSize:
    n_examples: int  # generated, before the split
    holdout: float
    epochs: float
    consistency: int
    few_shot_k: int


# Sized for 2 CPU cores: a LoRA step runs ~120 tokens/s (faster with adapters on the upper layers only) and a
# prompt is read at a few hundred tokens/s, so the few-shot baseline (k examples in every prompt) costs as much
# as a fine-tuning epoch. --quick keeps CI under three minutes.
QUICK = DemoSize(n_examples=96, holdout=0.25, epochs=3, consistency=6, few_shot_k=2)
FULL = DemoSize(n_examples=400, holdout=0.2, epochs=3, consistency=24, few_shot_k=4)


@dataclass
class DemoResult:
    out: Path
    stages: list[tuple[str, float]] = field(default_factory=list)
    report: EvalReport | None = None
    run_dir: Path | None = None

    @property
    def gate_passed(self) -> bool:
        return self.report is not None and self.report.gate.passed


def run(
    out: Path,
    *,
    quick: bool = False,
    model: str | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> DemoResult:
    """Run the whole demo into ``out`` (created; refuses a non-empty folder that is not an earlier demo)."""
    out = _prepare_out(Path(out))
    size = QUICK if quick else FULL
    cfg = demo_config(out, size, model)
    result = DemoResult(out)
    notify = on_stage or (lambda stage, state: None)

    @contextmanager
    def stage(name: str):
        notify(name, "start")
        t0 = time.perf_counter()
        yield
        result.stages.append((name, time.perf_counter() - t0))
        notify(name, "done")

    with stage("generate data"):
        all_rows = _generator().write_all(out / "data" / "tickets.jsonl", size.n_examples, seed=7)
    with stage("check data"):
        check_data(all_rows, cfg)
    with stage("split (stratified)"):
        from tunesmith.data.split import split_file

        split = split_file(
            all_rows, out / "data", holdout=size.holdout, seed=cfg.data.seed, task="classification"
        )
        cfg.data.train, cfg.data.holdout = split.train_path, split.holdout_path
    from tunesmith.eval import run as ev
    from tunesmith.models.inference import load_for_inference

    spec = ev.EvalSpec(data=split.holdout_path, out=out / "report", model=cfg.model.name, train=split.train_path,
                       baselines=("zero-shot", "few-shot"), settings=cfg.eval, system_prompt=cfg.data.system_prompt)  # fmt: skip
    results: dict[str, Any] = {}
    with stage("prompted baselines"):
        ctx = ev.prepare(spec)
        base, tok = load_for_inference(cfg.model.name)
        for name in ev.candidate_names(spec):  # each candidate's answers report their own progress and ETA
            notify("prompted baselines", f"{name}: {len(ctx.rows)} hold-out examples")
            results[name] = ev.evaluate(ctx, name, base, tok)
        del base
    with stage("fine-tune (LoRA)"):
        from tunesmith.train.api import train

        trained = train(cfg, on_progress=lambda e: _train_progress(e, notify))
        if trained.status not in ("completed", "early_stopped"):
            raise TunesmithError(
                f"Training ended with status {trained.status}.", f"See {trained.run_dir}/summary.json."
            )
        result.run_dir = trained.run_dir
    with stage("evaluate fine-tuned"):
        ctx = ev.with_adapter(ctx, trained.run_dir)
        model_ft = (
            trained.model
            if trained.model is not None
            else load_for_inference(cfg.model.name, trained.run_dir)[0]
        )
        model_ft.eval()
        notify("evaluate fine-tuned", f"finetuned: {len(ctx.rows)} hold-out examples")
        results["finetuned"] = ev.evaluate(ctx, "finetuned", model_ft, tok)
    with stage("report"):
        report = ev.finish(ctx, results).report
    demo = {
        "quick": quick,
        "stages": [{"stage": n, "seconds": round(s, 2)} for n, s in result.stages],
        "run_dir": str(trained.run_dir),
        "train_summary": trained.summary.model_dump(mode="json"),
    }
    result.report = report.model_copy(update={"demo": demo})
    write_eval_report(out / "report" / "report.json", result.report)
    return result


def _train_progress(event: dict[str, Any], notify: Callable[[str, str], None]) -> None:
    if event.get("event") == "step" and (
        event["step"] % 10 == 0 or event["step"] == event.get("total_steps")
    ):
        notify(
            "fine-tune (LoRA)",
            f"step {event['step']}/{event.get('total_steps')}  loss {event.get('loss', float('nan')):.3f}",
        )


def demo_config(out: Path, size: DemoSize, model: str | None) -> ProjectConfig:
    """The example's config with the demo's folders, sizes and gate."""
    cfg = load_config(EXAMPLE_DIR / "tunesmith.yaml")
    if model and model != cfg.model.name:
        cfg.model.name = model
        cfg.lora.layers_to_transform = None  # the example's layer choice is SmolLM2's (30 layers)
    cfg.train.output_dir = out / "runs"
    cfg.train.run_name = "support-tickets-lora"
    cfg.train.epochs = size.epochs
    cfg.eval.consistency_examples = size.consistency
    cfg.eval.few_shot_k = size.few_shot_k
    cfg.eval.require = list(GATE)
    return cfg


def check_data(path: Path, cfg: ProjectConfig) -> None:
    from tunesmith.data.check import validate_data
    from tunesmith.models.load import load_tokenizer

    report = validate_data(
        path,
        task="classification",
        tokenizer=load_tokenizer(cfg.model.name),
        max_seq_len=cfg.data.max_seq_len,
        system_prompt=cfg.data.system_prompt,
    )
    if not report.ok:
        first = "; ".join(f"line {e.line}: {e.message}" for e in report.errors[:3])
        raise TunesmithError(
            f"The generated demo data failed its check: {first}",
            "This is a bug in the demo generator; please report it.",
        )


def _generator() -> Any:
    path = EXAMPLE_DIR / "generate.py"
    if not path.exists():
        raise TunesmithError(
            f"The demo example is missing ({path}).",
            "Run the demo from a checkout of the tunesmith repository (make demo).",
        )
    spec = importlib.util.spec_from_file_location("tunesmith_demo_generate", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise TunesmithError(f"--out {out} is a file.", "Pass a folder (created when missing).")
    if out.exists() and any(out.iterdir()) and not (out / "report").exists() and not (out / "data").exists():
        raise TunesmithError(
            f"--out {out} is not empty and holds no earlier demo.", "Pass a new or empty folder."
        )
    import shutil

    for sub in ("data", "runs", "report"):  # an earlier demo in the same folder is replaced
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out
