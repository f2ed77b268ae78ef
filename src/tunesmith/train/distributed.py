"""Multi-process training (`tunesmith train CONFIG --nproc N`): DDP through torchrun, gloo on CPU, NCCL on GPU.

``launch`` starts ``torch.distributed.run --standalone --nproc-per-node N`` with this module as the
program. Each worker initialises the process group and calls the ordinary ``tunesmith.train.api.train``;
the loop (train/loop.py) sees ``torch.distributed`` initialised, wraps ``loss.TokenLossModule(model)`` in
DDP, gives every process its share of each optimizer step's micro-batches and all-reduces the token counts,
so N processes with accumulation A train exactly the global batch of 1 process with accumulation N x A (the
same loss curve; tests/integration/train/test_speed_ddp.py checks it).

Choices:
- The run folder name is fixed by the launcher before the workers start (a timestamped id computed by each
  worker could differ between them); only rank 0 writes files.
- Rank 0 forwards the loop's progress events as ``TUNESMITH_EVENT {json}`` lines on its stdout; the launcher
  parses them for the progress bar and passes any other output through.
- On CPU each worker gets ``cores // N`` threads (torchrun's default of 1 thread would leave cores idle
  when N is smaller than the core count).
- Ctrl-C reaches every worker (same process group): each asks its loop to stop after the step, the loop
  saves a checkpoint, and ``--resume`` continues it (with the same or a different N).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.results.run import read_run_summary

EVENT_PREFIX = "TUNESMITH_EVENT "


def launch(
    config: Path,
    overrides: list[str],
    nproc: int,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> Any:
    """Run the training of ``config`` in ``nproc`` processes and return its ``runs.RunResult`` (model=None)."""
    from tunesmith.config import load_config
    from tunesmith.train.runs import RunResult, check_new_run_dir, default_run_id

    if nproc < 1:
        raise TunesmithError(f"--nproc must be at least 1 (got {nproc}).", "Use --nproc 2 for two processes.")
    cfg = load_config(config, overrides)
    overrides = list(overrides)
    if resume is None:
        if cfg.train.run_name is None:
            name = default_run_id(cfg)
            overrides.append(f"train.run_name={name}")
            cfg.train.run_name = name
        run_dir = check_new_run_dir(cfg)
    else:
        run_dir = Path(resume)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "tunesmith.train.distributed",
        str(config),
        *overrides,
    ]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    if force:
        cmd.append("--force")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    errors: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(EVENT_PREFIX):
            if on_progress is not None:
                on_progress(json.loads(line[len(EVENT_PREFIX) :]))
            continue
        if line.startswith("tunesmith error: ") or re.match(r"^[\w.]+(Error|Exception): ", line):
            errors.append(line.rstrip())  # kept apart: torchrun's long failure report follows them
        tail = (tail + [line.rstrip()])[-40:]
        if on_output is not None:
            on_output(line.rstrip())
    code = proc.wait()
    summary_path = run_dir / "summary.json"
    if code != 0 and not summary_path.exists():
        message = _worker_error(errors + tail)
        raise TunesmithError(
            f"Training with --nproc {nproc} failed (exit code {code}): {message}",
            "Run once without --nproc to see the error on its own; a fix there fixes the multi-process run.",
        )
    return RunResult(run_dir, read_run_summary(summary_path))


def _worker_error(tail: list[str]) -> str:
    # a worker's TunesmithError line, else the last exception line of a traceback, else the last output
    for line in reversed(tail):
        if line.startswith("tunesmith error: "):
            return line[len("tunesmith error: ") :]
    for line in reversed(tail):
        if re.match(r"^[\w.]+(Error|Exception): ", line) and "ChildFailedError" not in line:
            return line
    return tail[-1] if tail else "no output"


# --------------------------------------------------------------------------- worker (one per process)


def worker(argv: list[str] | None = None) -> int:
    """The program torchrun starts in every process."""
    import torch
    import torch.distributed as dist

    ap = argparse.ArgumentParser(prog="tunesmith.train.distributed")
    ap.add_argument("config", type=Path)
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    stop = {"requested": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("requested", True))
    try:
        from tunesmith.config import load_config
        from tunesmith.train.api import train

        cfg = load_config(args.config, args.overrides)

        def emit(event: dict[str, Any]) -> None:
            if rank == 0:
                print(EVENT_PREFIX + json.dumps(event, default=str), flush=True)

        # stop only when every process agrees, so none is left waiting in a collective
        def should_stop() -> bool:
            flag = torch.tensor([1 if stop["requested"] else 0], dtype=torch.long)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())

        train(cfg, resume=args.resume, force=args.force, on_progress=emit, should_stop=should_stop)
        return 0
    except TunesmithError as exc:
        print(
            f"tunesmith error: (rank {rank}) {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
            flush=True,
        )
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(worker())


# --------------------------------------------------------------------------- FSDP2 (train.distributed: fsdp)
#
# With FSDP2 (``torch.distributed.fsdp.fully_shard``) each process keeps 1/N of every weight, gradient and
# AdamW state: a decoder block's weights are all-gathered for its forward and backward and freed after, and
# gradients are reduce-scattered (averaged, like DDP) after each micro-batch's backward. Parameters keep their
# names (they become DTensor shards in place), so checkpoints are written in the one-process format: every
# process takes part in gathering each tensor, rank 0 keeps it and writes the checkpoint once, and a resume
# with any process count (1 included) loads it and takes its own shard.


def shard_model(model: Any) -> Any:
    """Shard ``model`` (in place) over the processes of the initialised process group and return the module
    to train through: ``loss.TokenLossModule(model)``, the FSDP root.

    The shard groups: each decoder block (the classes the model lists in ``_no_split_modules``, the blocks
    accelerate's FSDP auto-wrap uses) is one group; the root holds the rest (embeddings, final norm, head),
    which stay gathered for a whole forward and backward. Only the root's forward gathers them, so the loss
    (and the hold-out loss) must be computed through the returned module (``loss.sum_token_loss`` does).

    Raises:
        TunesmithError: when the model names no decoder block class (nothing to shard layer by layer).
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from tunesmith.train.loss import TokenLossModule, _causal_lm

    blocks = set(getattr(_causal_lm(model), "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        raise TunesmithError(
            f"train.distributed: fsdp cannot find the decoder blocks of {type(_causal_lm(model)).__name__} "
            "(its _no_split_modules is empty).",
            "Use train.distributed: ddp for this model.",
        )
    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (dist.get_world_size(),))
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    return fully_shard(TokenLossModule(model), mesh=mesh)


def unsharded_copy(model: Any, cfg: Any) -> Any:
    """After training: an ordinary (unsharded) model with the trained weights of the FSDP-sharded ``model``,
    on every process, for the forgetting probe, ``save_pretrained`` and the caller. The base is loaded
    again (``adapters.build_trainable``) and the gathered trainable weights are copied in, so the weights
    must fit one process at this point; gradients and optimizer state never are gathered whole on every
    process. Collective: every process calls it."""
    import torch

    from tunesmith.train.adapters import build_trainable, trainable_state

    weights = full_tensors(trainable_state(model), keep=True)
    fresh = build_trainable(cfg)
    params = trainable_state(fresh)
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    return fresh


def full_tensors(tensors: dict[str, Any], keep: bool) -> dict[str, Any]:
    """``tensors`` with each DTensor shard replaced by the whole tensor on the CPU. Collective under FSDP:
    every process calls it in the same order; where ``keep`` is False (ranks other than 0) the gathered
    copies are dropped as they come and the dict holds None for them."""
    out: dict[str, Any] = {}
    for name, value in tensors.items():
        if _is_dtensor(value):
            full = value.full_tensor()
            out[name] = full.cpu() if keep else None
        else:
            out[name] = value
    return out


def full_optimizer_state(optimizer: Any, keep: bool) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded state tensor gathered (``full_tensors``): the same
    format as a one-process run's, so a checkpoint resumes with any process count."""
    saved = optimizer.state_dict()
    state = {idx: full_tensors(dict(per_param), keep) for idx, per_param in saved["state"].items()}
    return {**saved, "state": state}


def shard_like(full: Any, like: Any) -> Any:
    """The part of the whole tensor ``full`` that this process holds for the parameter (or state) ``like``:
    ``full`` itself when ``like`` is not a DTensor. Every process passes the same ``full`` (all read the
    same checkpoint), so no data moves between processes."""
    if not _is_dtensor(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    full = full.to(device=like.device, dtype=like.dtype)
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def shard_optimizer_state(saved: dict[str, Any], optimizer: Any) -> dict[str, Any]:
    """A checkpoint's (whole-tensor) optimizer state with each tensor cut to this process's shard of its
    parameter, ready for ``optimizer.load_state_dict``."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for idx, per_param in saved["state"].items():
        param = params[int(idx)]
        state[idx] = {
            k: shard_like(v, param) if hasattr(v, "shape") and v.shape == param.shape else v
            for k, v in per_param.items()
        }
    return {**saved, "state": state}


def all_finite(tensors: Any) -> bool:
    """Whether every value of every tensor is finite, on every process: each checks its own shards and the
    answer is agreed (all-reduce), so all processes stop together or none does."""
    import torch

    tensors = list(tensors)
    sharded = any(_is_dtensor(t) for t in tensors)
    local = [t.to_local() if _is_dtensor(t) else t for t in tensors]
    ok = all(bool(torch.isfinite(t).all()) for t in local)
    if sharded:
        import torch.distributed as dist

        flag = torch.tensor([1 if ok else 0], dtype=torch.long)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        ok = bool(flag.item())
    return ok


def _is_dtensor(value: Any) -> bool:
    # a DTensor exists only once torch.distributed.tensor is imported (FSDP does); not importing it keeps
    # one-process checkpoints from paying for the import
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(value, mod.DTensor)
