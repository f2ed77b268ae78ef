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
