"""Shared plumbing of the preference methods (``dpo``, ``reward``, ``ppo``, ``rloo``, ``grpo``): pairs, TRL
arguments, metrics.

Design choices (see docs/preference.md):

- **TRL does the optimisation** of rloo and grpo (``RLOOTrainer``, ``GRPOTrainer``); this module only
  translates tunesmith's config into TRL's arguments, with the CPU-safe settings TRL does not default to:
  fp32 (``bf16=False``, ``fp16=False``), gradient checkpointing only when ``train.gradient_checkpointing``
  asks for it, no checkpoints written by the Trainer (we save the final artifact ourselves), no external
  loggers, and no console printing (library code never prints: TRL's printer/progress callbacks are removed
  and every logged metric goes to the run's ``metrics.jsonl`` instead).
- **Hold-out pairs**: ``data.holdout`` when given, else ``data split``'s grouped split
  (``data.split.holdout_split``: pairs with near-duplicate prompts stay on one side) of ``data.holdout_fraction``
  of the training pairs, seeded by ``data.seed``, with at least one pair on each side.
- **Scoring** (log-probabilities of an answer, reward scores, preference accuracy) lives in
  ``tunesmith.models.scoring``, because evaluation reads the same numbers and must not import training.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config import ProjectConfig
from tunesmith.data.formats import LoadedData, load_records_or_raise
from tunesmith.data.split import holdout_split
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from tunesmith.train.runs import Run


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Pairs:
    """Preference pairs in the canonical shape (``prompt``/``chosen``/``rejected`` message lists)."""

    train: list[dict[str, Any]]
    holdout: list[dict[str, Any]]


def load_pairs(cfg: ProjectConfig) -> Pairs:
    """Training and hold-out pairs for a preference run; refuses anything that is not preference data."""
    if cfg.data.train is None:
        raise TunesmithError(
            f"method: {cfg.train.method} needs preference pairs in data.train.",
            'Set data.train to a JSONL file of {"prompt": ..., "chosen": ..., "rejected": ...} lines.',
        )
    train = _pairs_from(cfg.data.train)
    if cfg.data.holdout is not None:
        return Pairs(train.rows, _pairs_from(cfg.data.holdout).rows)
    if len(train.records) < 2:
        raise TunesmithError(
            f"{cfg.data.train} holds {len(train.records)} pair: too few to split off a hold-out.",
            "Add more pairs, or give a separate data.holdout file.",
        )
    train_idx, hold_idx = holdout_split(train, cfg.data.holdout_fraction, cfg.data.seed, at_least_one=True)
    if not hold_idx:
        raise TunesmithError(
            f"The {len(train.records)} pairs of {cfg.data.train} are copies or near-copies of one another: "
            "any hold-out would leak into training.",
            "Give a separate data.holdout file, or more varied pairs.",
        )
    rows = train.rows
    return Pairs([rows[i] for i in train_idx], [rows[i] for i in hold_idx])


def _pairs_from(path: Path) -> LoadedData:
    from tunesmith.data.formats import load_data

    detected = load_data(path).task
    if detected not in (None, "preference"):
        raise TunesmithError(
            f"{path} holds {detected} data, but preference methods train on pairs.",
            'Give lines like {"prompt": ..., "chosen": ..., "rejected": ...}; train on this file with method: sft.',
        )
    return load_records_or_raise(path, "preference")


# --------------------------------------------------------------------------- TRL arguments


def trl_args(config_cls: type, cfg: ProjectConfig, out_dir: Path, **extra: Any) -> Any:
    """A TRL ``*Config`` with tunesmith's schedule and CPU-safe precision (see the module docstring)."""
    import torch

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and cfg.model.dtype in ("auto", "bfloat16") and torch.cuda.is_bf16_supported()
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=t.fixed("batch_size"),
        per_device_eval_batch_size=t.fixed("batch_size"),
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.resolved_lr(),
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.fixed("warmup_ratio"),  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.fixed("epochs"),
        max_steps=t.max_steps if t.max_steps is not None else -1,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,  # the default averages NaN losses away; the divergence guard needs them
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=t.fixed("gradient_checkpointing"),
        use_cpu=not on_gpu,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    kwargs.update(extra)
    return config_cls(**kwargs)


def quiet(trainer: Any, sink: MetricsSink) -> Any:
    """Remove TRL/transformers console printing and route every logged metric to ``sink``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_callback(sink))
    return trainer


def fit(trainer: Any, out_dir: Path) -> None:
    """``trainer.train()``; the Trainer's scratch folder (nothing is saved there) is removed afterwards."""
    import shutil

    try:
        trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def refuse_resume(method: str, resume: Any) -> None:
    if resume is not None:
        raise TunesmithError(
            f"method: {method} runs cannot be resumed (they keep no resumable checkpoints).",
            "Start a new run; reinforcement runs are short (a few hundred steps at most).",
        )


@contextlib.contextmanager
def preference_run(method: str, cfg: ProjectConfig, resume: Path | None, force: bool) -> Iterator[Run]:
    """The run folder of a ppo/rloo/grpo run; an exception inside marks it ``failed`` (``interrupted`` for
    Ctrl-C) with the error before it propagates.

    Raises:
        TunesmithError: before any folder is created, for ``resume`` (TRL keeps no tunesmith checkpoints)
        or ``force`` (preference data is used only when every line is valid), or when the run folder
        cannot be created.
    """
    from tunesmith.train.divergence import failure_text
    from tunesmith.train.runs import create_run

    refuse_resume(method, resume)
    if force:
        raise TunesmithError(
            f"--force is not supported for method: {method} (every preference line must be valid).",
            "Fix the lines `tunesmith data check` names, or drop them, and train again without --force.",
        )
    run = create_run(cfg)
    try:
        yield run
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.finish({"error": failure_text(exc)}, status)
        raise


def no_progress_bars() -> None:
    """datasets' map/filter progress bars write to the terminal; library code stays quiet."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


class MetricsSink:
    """Collects the metrics TRL logs (one dict per logging step), forwards them to the run (metrics.jsonl)
    and to ``on_progress``, and asks the Trainer to stop when ``should_stop()`` says so."""

    def __init__(
        self,
        write: Any = None,
        on_progress: Any = None,
        should_stop: Any = None,
        total_steps: int | None = None,
    ) -> None:
        self.history: list[dict[str, float]] = []
        self._write = write
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.total_steps = total_steps
        self.stopped = False
        self._last: tuple[float, float] | None = None

    def add(self, step: int, logs: dict[str, Any]) -> None:
        row = {"step": step, **{k: float(v) for k, v in logs.items() if isinstance(v, int | float)}}
        if "train_runtime" in row:  # the Trainer's end-of-run aggregate, not a step
            return
        self._add_speed(row)
        self.history.append(row)
        if self._write is not None:
            self._write(row)
        if self.on_progress is not None:
            self.on_progress({"event": "step", "step": step, "total_steps": self.total_steps, "loss": row.get("loss"),
                              "lr": row.get("learning_rate"), "tokens_per_s": row.get("tokens_per_s"),
                              "reward": row.get("reward"), "kl": row.get("kl")})  # fmt: skip

    def _add_speed(self, row: dict[str, float]) -> None:
        """tokens_per_s from TRL's cumulative ``num_tokens`` between two logged steps (wall clock)."""
        import time

        now, tokens = time.monotonic(), row.get("num_tokens")
        if tokens is not None and self._last is not None and now > self._last[0]:
            row["tokens_per_s"] = (tokens - self._last[1]) / (now - self._last[0])
        if tokens is not None:
            self._last = (now, tokens)

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.history if key in r]


def _callback(sink: MetricsSink) -> TrainerCallback:
    from transformers import TrainerCallback

    class _ToSink(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            import time

            sink.total_steps = state.max_steps
            sink._last = (time.monotonic(), 0.0)  # TRL's num_tokens counts from 0: step 1 gets a speed too
            if sink.on_progress is not None:
                sink.on_progress(
                    {"event": "start", "step": 0, "total_steps": state.max_steps, "resumed": False}
                )

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            if logs:
                sink.add(state.global_step, logs)
                _check_finite(state.global_step, logs, args.learning_rate)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if sink.should_stop is not None and sink.should_stop():
                sink.stopped = True
                control.should_training_stop = True

    return _ToSink()


def _check_finite(step: int, logs: dict[str, Any], lr: float) -> None:
    """The divergence guard (train/divergence.py) on what TRL logs: raising here ends ``trainer.train()``
    before the method saves anything, and the run is recorded as failed."""
    from tunesmith.train.divergence import TrainingDiverged

    for key, what in (("loss", "the training loss"), ("grad_norm", "the gradient norm")):
        value = logs.get(key)
        if isinstance(value, int | float) and not math.isfinite(value):
            raise TrainingDiverged(step, what, float(value), lr, None)


def curve_measures(sink: MetricsSink) -> dict[str, Any]:
    """The ``RunSummary`` fields every TRL-trained method shares: steps, training loss at the start, end
    (means of the first/last logged values, see ``first_last``) and lowest, and the tokens TRL counted."""
    losses = sink.series("loss")
    first, last = first_last(losses) if losses else (None, None)
    tokens = sink.series("num_tokens")  # TRL's running count of input tokens
    return {
        "steps": int(sink.history[-1]["step"]) if sink.history else 0,
        "first_train_loss": first,
        "final_train_loss": last,
        "best_train_loss": min(losses) if losses else None,
        "tokens_seen": int(tokens[-1]) if tokens else None,
    }


def first_last(values: list[float], k: int = 3) -> tuple[float, float]:
    """Mean of the first and of the last ``k`` values (noise-robust start/end of a training curve)."""
    if not values:
        return math.nan, math.nan
    k = max(1, min(k, len(values) // 2 or 1))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- policy


@dataclass
class Policy:
    """The model to train, its tokenizer, the peft config TRL should apply (None when the model already
    carries its adapter or trains fully) and the base model's name (recorded as ``base_model``)."""

    model: Any
    tokenizer: Any
    peft_config: Any
    base: str
    init_adapter: Path | None = None


def build_policy(cfg: ProjectConfig) -> Policy:
    """The policy for dpo/ppo: the base, or ``train.init_from`` (an SFT run's adapter or full model).

    - base + lora/dora/qlora: TRL wraps it with a fresh adapter, and the reference is the same weights with
      the adapter disabled (no second copy).
    - SFT adapter run + lora/dora/qlora: its adapter is loaded trainable and TRL keeps a frozen copy of the
      *adapter* (a few MB, named ``ref``) as the reference, so the KL/DPO reference is the SFT policy.
    - SFT adapter run + full: the adapter is merged into the base and every weight trains.
    - full: TRL loads a separate frozen reference copy (the only case with a second copy of the weights).
    """
    import torch

    from tunesmith.models.inference import locate_run_weights, run_base_model
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.train.adapters import to_lora_config

    torch.manual_seed(cfg.train.seed)
    t = cfg.train
    base, adapter = cfg.model.name, None
    if t.init_from is not None:
        if not Path(t.init_from).exists():
            raise TunesmithError(
                f"train.init_from {t.init_from} does not exist.",
                "Point it at the folder of a finished SFT run (runs/<id>).",
            )
        kind, folder = locate_run_weights(Path(t.init_from))
        if kind == "model":
            base = str(folder)
        else:
            base = run_base_model(Path(t.init_from)) or base
            adapter = folder
    model = load_causal_lm(
        base,
        dtype=cfg.model.dtype,
        load_in_4bit=t.finetune == "qlora",
        # preference batches are padded pairs: sdpa_packed would fall back to sdpa on every one of them
        attn_implementation="sdpa"
        if cfg.model.attn_implementation == "sdpa_packed"
        else cfg.model.attn_implementation,
    )
    tok_src = adapter if adapter is not None and (adapter / "tokenizer_config.json").exists() else base
    tokenizer = load_tokenizer(str(tok_src))
    if t.finetune == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.fixed("gradient_checkpointing"))
    if adapter is not None:
        from peft import PeftModel

        if t.finetune == "full":
            merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            return Policy(merged, tokenizer, None, base, adapter)
        return Policy(
            PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tokenizer, None, base, adapter
        )
    if t.finetune == "full":
        return Policy(model, tokenizer, None, base)
    return Policy(model, tokenizer, to_lora_config(cfg.lora, t.finetune), base)


def keep_fp32_adapters(model: Any) -> None:
    """TRL casts QLoRA adapter weights to bf16 (the QLoRA paper's GPU recipe); on a CPU bf16 matmuls are
    ~250x slower, so trainable weights go back to fp32 there."""
    import torch

    if torch.cuda.is_available():
        return
    for p in model.parameters():
        if p.requires_grad and p.dtype == torch.bfloat16:
            p.data = p.data.float()


def drop_ref_adapter(model: Any) -> None:
    """Remove TRL's frozen ``ref`` adapter copy before saving, so the run holds only the trained adapter."""
    peft_config = getattr(model, "peft_config", None)
    if peft_config and "ref" in peft_config:
        model.set_adapter("default")
        model.delete_adapter("ref")
