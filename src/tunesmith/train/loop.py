"""The training loop shared by sft and cpt: token-weighted accumulation, schedule, hold-out loss, early
stopping, checkpoints and exact resume. No HF Trainer: this loop is small enough to read in one sitting.

Choices, and why:

- **Token-weighted accumulation.** Each micro-batch's *summed* loss (``loss.sum_token_loss``) is divided by
  the number of trained tokens of the whole optimizer step (all micro-batches, all processes), so the
  gradient is the mean over tokens whatever the split: batch 8 x accumulation 1 == batch 1 x accumulation 8.
  Averaging per micro-batch (the HF default for years) over-weights short examples.
- **Data order is a pure function of (seed, epoch)** (``packing.build_batches``), so a resume rebuilds the
  epoch's batches and skips the ones already consumed instead of saving the order.
- **Exact resume**: the checkpoint holds the trainable weights, AdamW state, scheduler state and the
  torch/Python/NumPy RNG states at an optimizer-step boundary; the resumed loss trajectory equals the
  uninterrupted one (the test allows 1e-4 relative).
- **Stopping** (``should_stop``: Ctrl-C in the CLI, cancel/pause in the server) is checked after every
  optimizer step; the loop then saves a checkpoint, measures the hold-out loss of the weights it stops
  with (the summary's final hold-out loss is never stale) and returns, so nothing done is lost.
- **Best weights**: every hold-out evaluation that improves the best loss writes a checkpoint marked best
  (never pruned); at the end, if the best beats the final weights, they are restored before saving
  artifacts (like HF's ``load_best_model_at_end``), and the summary says which weights were saved.
- **Divergence guard** (``divergence.py``): a non-finite loss or gradient norm (checked before the
  optimizer steps), hold-out loss, or trainable weight (checked before every save) stops the run with
  ``TrainingDiverged``; the last good checkpoint is kept and nothing after it is saved.
- **Distributed-ready**: under ``torch.distributed`` the model is wrapped in DDP (around
  ``loss.TokenLossModule``), or sharded with FSDP2 when the plan says so (``train.distributed``,
  train/distributed.py); each optimizer step's micro-batches are split across processes, token counts are
  all-reduced, and only rank 0 writes (checkpoints in the one-process format, so a resume may use another
  process count).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.tokenize import Tokenized
from tunesmith.errors import TunesmithError
from tunesmith.train import checkpoints as ckpt
from tunesmith.train.adapters import trainable_state, unwrap
from tunesmith.train.distributed import (
    all_finite,
    full_optimizer_state,
    full_tensors,
    shard_like,
    shard_model,
    shard_optimizer_state,
)
from tunesmith.train.divergence import NonFinite, TrainingDiverged, check_step
from tunesmith.train.loss import TokenLossModule, _is_fsdp, sum_token_loss
from tunesmith.train.packing import Batch, Step, build_batches, build_steps
from tunesmith.train.plan import TrainPlan, describe, make_plan
from tunesmith.train.runs import Run

Progress = Callable[[dict[str, Any]], None]


@dataclass
class LoopState:
    """Counters saved in every checkpoint (state.json)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro_in_epoch: int = 0  # checkpoints before the memory plan: micro-batches of ``epoch`` consumed
    tokens_trained: int = 0  # tokens that carried loss
    tokens_seen: int = 0  # every non-padding token
    last_loss: float | None = None
    first_loss: float | None = None
    best_loss: float | None = None  # lowest training loss of any step
    last_val: float | None = None
    first_val: float | None = None
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    data_fingerprint: str | None = None  # of the tokenized train set: a resume on changed data is refused
    step_in_epoch: int = 0  # optimizer steps of ``epoch`` already done


@dataclass(frozen=True)
class FitResult:
    state: LoopState
    status: str  # completed | stopped | early_stopped
    total_steps: int
    weights_from: str  # "final" or "best (step N)"
    plan: dict[str, Any] | None = None  # the run's plan as followed (plan.describe), measured peak included

    def summary_fields(self, n_train: int, n_holdout: int, resume_from: Path | None) -> dict[str, Any]:
        """The ``RunSummary`` fields every method on this loop reports (steps, losses, tokens, examples); the
        method adds its ``extras``."""
        s = self.state
        return {
            "steps": s.step,
            "total_steps": self.total_steps,
            "epochs_completed": s.epoch,
            "first_train_loss": s.first_loss,
            "final_train_loss": s.last_loss,
            "best_train_loss": s.best_loss,
            "first_val_loss": s.first_val,
            "final_val_loss": s.last_val,
            "best_val_loss": s.best_val,
            "best_step": s.best_step,
            "tokens_trained": s.tokens_trained,
            "tokens_seen": s.tokens_seen,
            "train_examples": n_train,
            "holdout_examples": n_holdout,
            "resumed_from": str(resume_from) if resume_from is not None else None,
        }


def fit(
    model: Any,
    train: list[Tokenized],
    holdout: list[Tokenized],
    cfg: ProjectConfig,
    run: Run,
    *,
    plan: TrainPlan | None = None,
    resume_from: Path | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    objective: Any | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` following ``cfg.train`` and ``plan`` (default: made here with
    ``plan.make_plan``); checkpoints go to ``run``.

    ``objective``: None for next-token loss (sft/cpt); a preference objective (train/pref_engine.py) has
    ``loss(model, batch) -> (summed loss, units)``, ``units(batch)`` (the step's divisor: pairs) and
    ``evaluate(model, examples, cfg)`` (the hold-out loss)."""
    import torch

    from tunesmith.train.microbatch import MicroBatcher

    t = cfg.train
    world, rank = _dist()
    emit = on_progress or (lambda event: None)
    plan = plan or make_plan(cfg, train, world)
    total_steps = plan.schedule.total_steps
    sharded = world > 1 and plan.memory.distributed == "fsdp"
    if sharded and objective is not None:
        raise TunesmithError(
            f"train.distributed: fsdp shards sft and cpt runs, not method: {cfg.train.method}.",
            "Set train.distributed: ddp (or auto).",
        )
    # FSDP2 shards the model in place before the optimizer is built: AdamW then steps (and stores) shards
    fsdp_root = shard_model(model) if sharded else None
    micro = MicroBatcher(
        plan.memory,
        packing=t.packing,
        world=world,
        step_tokens=math.ceil(plan.step_tokens / world),
        emit=emit,
    )
    params = [p for p in unwrap(model).parameters() if p.requires_grad]
    # fused AdamW: one kernel over all parameters; on this CPU a full fine-tune step of SmolLM2's 135M
    # parameters takes ~2x less optimizer time than the default loop (bench/README.md, lever table)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(params, lr=plan.schedule.lr, weight_decay=t.weight_decay, fused=fused)
    scheduler = build_scheduler(optimizer, t.lr_scheduler, plan.schedule.warmup_steps, total_steps)
    # train and hold-out together: a changed hold-out row changes what the run measures (and may leak), so a
    # resume on it is refused like one on changed training rows; ``legacy`` is what runs saved before the
    # hold-out was included recorded (their resume still checks the training rows)
    fingerprint = data_fingerprint(list(train) + list(holdout or []))
    legacy = data_fingerprint(train)
    state = LoopState(data_fingerprint=fingerprint)
    if objective is not None:
        holdout = _WithObjective(holdout, objective)
    if fsdp_root is not None:
        holdout = _ThroughEngine(holdout, fsdp_root)
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scheduler)
        state.step_in_epoch = state.step_in_epoch or -(-state.micro_in_epoch // (t.grad_accum * world))
        if state.data_fingerprint not in (None, fingerprint, legacy):
            raise TunesmithError(
                f"Cannot resume from {resume_from}: the training data changed since the run started.",
                "Restore the original data file, or start a new run.",
            )
    else:
        _seed_everything(t.seed)
    engine = fsdp_root or (_wrap_distributed(model) if world > 1 else model)
    emit(
        {"event": "start", "total_steps": total_steps, "step": state.step, "resumed": resume_from is not None}
    )
    if state.first_val is None and holdout and state.step == 0:
        state.first_val = state.last_val = _checked_val(evaluate(model, holdout, cfg), run, cfg, 0)
        run.log({"step": 0, "val_loss": state.first_val})
    clock = _Clock(state.step, total_steps)
    status = "completed"
    micro.start()
    while state.step < total_steps and status == "completed":
        steps = epoch_steps(train, cfg, plan, state.epoch, world)
        while state.step_in_epoch < len(steps) and state.step < total_steps:
            try:
                loss, n_trained, n_tokens = micro.run(
                    steps[state.step_in_epoch],
                    lambda batches: train_step(
                        engine, batches, optimizer, scheduler, params, t.max_grad_norm, rank, world, objective
                    ),
                    reset=lambda: optimizer.zero_grad(set_to_none=True),
                )
            except NonFinite as bad:
                raise _diverged(run, cfg, state.step + 1, bad) from None
            state.step += 1
            state.step_in_epoch += 1
            state.tokens_trained += n_trained
            state.tokens_seen += n_tokens
            state.last_loss = loss
            state.first_loss = state.first_loss if state.first_loss is not None else loss
            state.best_loss = loss if state.best_loss is None else min(state.best_loss, loss)
            row = clock.tick(state, n_tokens * world, scheduler.get_last_lr()[0])
            if objective is not None:  # e.g. DPO's rewards/margins of this step
                row.update(objective.step_metrics())
            if state.step % t.logging_steps == 0 or state.step == total_steps:
                run.log({k: v for k, v in row.items() if k not in ("event", "total_steps", "eta_s")})
            emit(row)
            status = _after_step(
                model, holdout, cfg, run, state, optimizer, scheduler, emit, should_stop, total_steps
            )
            if status != "completed":
                break
        else:
            if state.step_in_epoch >= len(steps):
                state.epoch += 1
                state.step_in_epoch = state.micro_in_epoch = 0
                if state.step < total_steps:
                    if t.eval_every is None and holdout:
                        status = _evaluate_and_track(
                            model, holdout, cfg, run, state, optimizer, scheduler, emit
                        )
                    if t.save_every is None and status == "completed":
                        _save(run, model, optimizer, scheduler, state, emit)
    result = _finish(model, holdout, cfg, run, state, optimizer, scheduler, emit, status, total_steps)
    return replace(result, plan=describe(plan.schedule, micro.finish()))


def epoch_steps(
    train: list[Tokenized], cfg: ProjectConfig, plan: TrainPlan, epoch: int, world: int
) -> list[Step]:
    """The optimizer steps of ``epoch`` (a pure function of the data, the plan's step size and the seed)."""
    t = cfg.train
    return build_steps(
        train, examples_per_step=plan.schedule.examples_per_step, batch_tokens=t.fixed("batch_tokens"),
        window=t.grad_accum * world, packing=t.packing, seed=t.seed, epoch=epoch,
    )  # fmt: skip


def train_step(
    engine: Any,
    micro: list[Batch],
    optimizer: Any,
    scheduler: Any,
    params: list[Any],
    max_norm: float,
    rank: int,
    world: int,
    objective: Any | None = None,
) -> tuple[float, int, int]:
    """One optimizer step over ``micro`` (this process takes every ``world``-th micro-batch).

    Returns the token-weighted mean loss of the step, trained tokens and seen tokens (this process)."""
    import torch

    loss_sum, n_total, n_local, n_tokens = accumulate_gradients(engine, micro, rank, world, objective)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):  # FSDP: a DTensor holding the global norm
        norm = norm.full_tensor()
    check_step(loss_sum / n_total, norm)  # before the update: a non-finite step never reaches the weights
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / n_total, n_local, n_tokens


def accumulate_gradients(
    engine: Any, micro: list[Batch], rank: int = 0, world: int = 1, objective: Any | None = None
) -> tuple[float, int, int, int]:
    """Backward over this process's share of ``micro`` with token weighting: each micro-batch's summed
    loss is divided by the trained tokens of the whole step (all micro-batches, all processes); with a
    preference ``objective`` by its units (pairs) instead.

    Returns (summed loss over all processes, trained tokens of the step, trained and seen tokens here)."""
    import contextlib

    mine = micro[rank::world]
    n_real = len(mine)
    # uneven tail: zero-weight batches so every process joins the gradient sync (DDP: once per step; FSDP:
    # every forward gathers shards, so all processes run as many forwards as the busiest one)
    n_runs = _all_reduce_int(n_real, max_=True) if world > 1 and _is_fsdp(engine) else max(n_real, 1)
    mine = mine + micro[:1] * (n_runs - n_real)
    weights = [1.0] * n_real + [0.0] * (n_runs - n_real)
    units = objective.units if objective is not None else (lambda b: b.n_trained)
    loss_fn = objective.loss if objective is not None else sum_token_loss
    n_units = sum(units(b) for b in mine[:n_real])
    n_local = sum(b.n_trained for b in mine[:n_real])
    n_total = _all_reduce_int(n_units) if world > 1 else n_units
    if n_total == 0:
        raise TunesmithError(
            "A training step has no trained token.", "Check the loss mask of the data (data.train_on)."
        )
    loss_sum = 0.0
    for i, (batch, weight) in enumerate(zip(mine, weights, strict=True)):
        sync = i == len(mine) - 1 or world == 1
        ctx = engine.no_sync() if not sync and hasattr(engine, "no_sync") else contextlib.nullcontext()
        with ctx:
            loss, _ = loss_fn(engine, batch)
            # DDP and FSDP average gradients over processes, hence * world to keep the token mean exact.
            (loss * (weight * world / n_total)).backward()
        loss_sum += float(loss.detach()) * weight
    if world > 1:
        loss_sum = _all_reduce_float(loss_sum)
    return loss_sum, n_total, n_local, sum(b.n_tokens for b in mine[:n_real])


def data_fingerprint(examples: list[Tokenized]) -> str:
    """A hash of the token ids and labels of ``examples`` (their order included): 16 hex digits."""
    import hashlib

    h = hashlib.sha256()
    for ex in examples:
        h.update(repr((ex.input_ids, ex.labels)).encode())
    return h.hexdigest()[:16]


def evaluate(model: Any, examples: list[Tokenized], cfg: ProjectConfig) -> float:
    """Token-weighted mean loss over ``examples`` (no dropout, no gradients); for hold-out examples that
    ``fit`` tagged with a preference objective, that objective's loss."""
    import torch

    objective = getattr(examples, "objective", None)
    if objective is not None:
        return objective.evaluate(model, examples, cfg)

    from tunesmith.progress import step

    inner = getattr(examples, "engine", None) or unwrap(model)  # FSDP: the root that gathers the shards
    was_training = inner.training
    inner.eval()
    total, n = 0.0, 0
    batches = list(
        build_batches(
            examples, batch_tokens=cfg.train.fixed("batch_tokens"), packing=cfg.train.packing, seed=0, epoch=0
        )
    )
    # a long hold-out is minutes on a CPU (step 0, every eval_every, the end, a Ctrl-C): count and ETA
    with torch.no_grad(), step("measuring the hold-out loss", len(batches)) as progress:
        for batch in batches:
            loss, k = sum_token_loss(inner, batch)
            total, n = total + float(loss), n + k
            progress.advance()
    if was_training:
        inner.train()
    return total / max(n, 1)


def build_scheduler(optimizer: Any, kind: str, warmup: int, total: int) -> Any:
    """Linear warmup then cosine/linear decay to 0, or constant (transformers' schedule functions)."""
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    fn = get_cosine_schedule_with_warmup if kind == "cosine" else get_linear_schedule_with_warmup
    return fn(optimizer, warmup, total)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    run: Run, model: Any, optimizer: Any, scheduler: Any, state: LoopState, *, is_best: bool = False
) -> Path | None:
    """A resumable checkpoint of the current step (rank 0 writes; others return None). Under FSDP every
    process takes part in gathering the shards, so every process calls it."""
    weights = full_tensors(trainable_state(model), keep=run.is_main)
    optimizer_state = full_optimizer_state(optimizer, keep=run.is_main)
    if not run.is_main:
        return None
    import numpy as np
    import torch
    from safetensors.torch import save_file

    def write(folder: Path) -> None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in weights.items()},
            str(folder / "trainable.safetensors"),
        )
        torch.save(optimizer_state, folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(
            {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
            folder / "rng.pt",
        )

    return ckpt.save_checkpoint(
        run.checkpoints_dir,
        state.step,
        write,
        asdict(state),
        keep=run.cfg.train.keep_checkpoints,
        val_loss=state.last_val,
        is_best=is_best,
    )


def load_checkpoint(
    folder: Path, model: Any, optimizer: Any | None = None, scheduler: Any | None = None
) -> LoopState:
    """Restore weights (and, when given, optimizer, scheduler and RNG state) from a checkpoint folder."""
    import json

    import numpy as np
    import torch

    load_trainable(model, folder / "trainable.safetensors")
    if optimizer is not None:  # a whole-tensor state; under FSDP each process keeps its shard
        saved = torch.load(folder / "optimizer.pt", weights_only=False)
        optimizer.load_state_dict(shard_optimizer_state(saved, optimizer))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
        rng = torch.load(folder / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    return LoopState(**json.loads((folder / ckpt.STATE).read_text(encoding="utf-8")))


def load_trainable(model: Any, path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = trainable_state(model)
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved))[:3], sorted(set(saved) - set(params))[:3]
        raise TunesmithError(
            f"Checkpoint {path.parent} does not match this model (missing {missing}, unexpected {extra}).",
            "Resume with the same model, finetune mode and LoRA settings as the run.",
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(shard_like(tensor, params[name]))


# --------------------------------------------------------------------------- internals


def _after_step(model, holdout, cfg, run, state, optimizer, scheduler, emit, should_stop, total_steps) -> str:  # noqa: ANN001
    t = cfg.train
    status = "completed"
    if t.eval_every and holdout and state.step % t.eval_every == 0 and state.step < total_steps:
        status = _evaluate_and_track(model, holdout, cfg, run, state, optimizer, scheduler, emit)
    if t.save_every and state.step % t.save_every == 0 and state.step < total_steps:
        _save(run, model, optimizer, scheduler, state, emit)
    if status == "completed" and should_stop is not None and should_stop():
        _save(run, model, optimizer, scheduler, state, emit)
        status = "stopped"
    return status


def _evaluate_and_track(model, holdout, cfg, run, state, optimizer, scheduler, emit) -> str:  # noqa: ANN001
    val = _checked_val(evaluate(model, holdout, cfg), run, cfg, state.step)
    state.last_val = val
    improved = state.best_val is None or val < state.best_val
    if improved:
        state.best_val, state.best_step, state.bad_evals = val, state.step, 0
        _save(run, model, optimizer, scheduler, state, emit, is_best=True)
    else:
        state.bad_evals += 1
    run.log({"step": state.step, "val_loss": val, "best_val_loss": state.best_val})
    emit({"event": "eval", "step": state.step, "val_loss": val, "best_val_loss": state.best_val})
    patience = cfg.train.early_stopping_patience
    if patience is not None and state.bad_evals >= patience:
        state.stopped_early = True
        return "early_stopped"
    return "completed"


def _save(run, model, optimizer, scheduler, state, emit, is_best: bool = False) -> None:  # noqa: ANN001
    if run.last_saved_step == state.step and not is_best:
        return  # this exact state is on disk already (e.g. a best save at a save_every step)
    if not all_finite(trainable_state(model).values()):  # every rank checks: they stop together
        raise _diverged(run, run.cfg, state.step, NonFinite("a trainable weight", math.nan))
    path = save_checkpoint(run, model, optimizer, scheduler, state, is_best=is_best)
    run.last_saved_step = state.step
    if path is not None:
        emit({"event": "checkpoint", "step": state.step, "path": str(path), "best": is_best})


def _finish(model, holdout, cfg, run, state, optimizer, scheduler, emit, status, total_steps) -> FitResult:  # noqa: ANN001
    # every ending measures the hold-out on the weights it ends with, a clean stop (Ctrl-C, a stop request)
    # included: the summary's final hold-out loss is never one from an earlier evaluation (issue 17). A stop
    # saved its checkpoint before this, so a second Ctrl-C during the measurement loses nothing.
    if holdout:
        final_val = _checked_val(evaluate(model, holdout, cfg), run, cfg, state.step)
        state.last_val = final_val
        run.log({"step": state.step, "val_loss": final_val})
        final_is_best = state.best_val is None or final_val <= state.best_val
        if final_is_best:
            state.best_val, state.best_step = final_val, state.step
        # after the best is updated: the line used to read "hold-out loss 0.0238 (best 0.3004)"
        emit({"event": "eval", "step": state.step, "val_loss": final_val, "best_val_loss": state.best_val})
    else:
        final_is_best = False
    if status != "stopped" or final_is_best:  # a stop saved this step already, unless it is now the best
        _save(run, model, optimizer, scheduler, state, emit, is_best=final_is_best)
    weights_from = "final"
    best = ckpt.best_checkpoint(run.checkpoints_dir)
    if status != "stopped" and best is not None and state.best_step != state.step:
        load_trainable(model, best / "trainable.safetensors")
        weights_from = f"best (step {state.best_step})"
    return FitResult(state, status, total_steps, weights_from)


def _checked_val(val: float, run: Run, cfg: ProjectConfig, step: int) -> float:
    if not math.isfinite(val):
        raise _diverged(run, cfg, step, NonFinite("the hold-out loss", val))
    return val


def _diverged(run: Run, cfg: ProjectConfig, step: int, bad: NonFinite) -> TrainingDiverged:
    """The run's failure: nothing more is saved; every checkpoint on disk passed the weights check."""
    return TrainingDiverged(
        step, bad.what, bad.value, cfg.train.resolved_lr(), ckpt.latest_checkpoint(run.checkpoints_dir)
    )


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _wrap_distributed(model: Any) -> Any:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(TokenLossModule(model))


def _all_reduce_int(x: int, max_: bool = False) -> int:
    import torch
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if max_ else dist.ReduceOp.SUM)
    return int(t.item())


def _all_reduce_float(x: float) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


class _WithObjective(list):
    """The hold-out examples with the objective their loss is measured by (read by ``evaluate``)."""

    def __init__(self, items: list[Tokenized], objective: Any) -> None:
        super().__init__(items)
        self.objective = objective


class _ThroughEngine(list):
    """The hold-out examples with the FSDP root their loss is computed through (read by ``evaluate``)."""

    def __init__(self, items: list[Tokenized], engine: Any) -> None:
        super().__init__(items)
        self.engine = engine
        self.objective = getattr(items, "objective", None)


class _Clock:
    """tokens/s and ETA since this process started training (a resume restarts the clock)."""

    def __init__(self, start_step: int, total: int) -> None:
        self.t0, self.start_step, self.total, self.tokens = time.perf_counter(), start_step, total, 0

    def tick(self, state: LoopState, tokens: int, lr: float) -> dict[str, Any]:
        self.tokens += tokens
        elapsed = time.perf_counter() - self.t0
        done = state.step - self.start_step
        eta = elapsed / done * (self.total - state.step) if done else None
        return {
            "event": "step",
            "step": state.step,
            "total_steps": self.total,
            "epoch": state.epoch,
            "loss": state.last_loss,
            "lr": lr,
            "tokens_per_s": round(self.tokens / elapsed, 1) if elapsed > 0 else None,
            "tokens_trained": state.tokens_trained,
            "eta_s": round(eta, 1) if eta is not None else None,
        }
