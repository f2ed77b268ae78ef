"""Crash-safe checkpoints and atomic artifact folders.

A checkpoint is written into a temp folder beside its final place, every file is fsynced, the folder is
renamed into place (an atomic step on POSIX), the parent folder is fsynced, and only then is it recorded
in ``checkpoints/index.json`` (itself replaced atomically). The index is the record: a folder that is
not listed there (a save killed before being recorded) is never resumed from, and temp folders left by a
killed save are swept on the next save. So a ``kill -9`` at any point leaves the previous checkpoint
usable. The last ``keep`` recorded checkpoints are kept, plus the best one (lowest hold-out loss).

Layout of one checkpoint (``checkpoints/step-00000040/``): ``trainable.safetensors`` (the parameters
that train: LoRA/DoRA weights, or every weight for full fine-tuning), ``optimizer.pt``, ``scheduler.pt``,
``rng.pt`` (torch, Python and NumPy RNG states) and ``state.json`` (step, position in the data order,
counters), written last.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

INDEX = "index.json"
STATE = "state.json"
TMP_PREFIX = ".tmp-"


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temp folder; on a clean exit it is fsynced and renamed to ``final``. On error it is removed.

    ``replace`` swaps out an existing ``final`` (the old one is moved aside first, then deleted)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if final.exists():
            if not replace:
                raise FileExistsError(final)
            old = final.parent / f"{TMP_PREFIX}old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a fsynced temp file and a rename (never a half-written file)."""
    tmp = path.parent / f"{TMP_PREFIX}{path.name}-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# --------------------------------------------------------------------------- the checkpoint index


def read_index(root: Path) -> dict[str, Any]:
    """``{"checkpoints": [{"step", "dir", "time", "val_loss"}...], "best": step | None}``; empty when none."""
    try:
        data = json.loads((root / INDEX).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("checkpoints"), list):
            return data
    except (OSError, json.JSONDecodeError):
        pass
    return {"checkpoints": [], "best": None}


def list_checkpoints(root: Path) -> list[Path]:
    """Recorded, complete checkpoints, oldest first."""
    out = []
    for entry in read_index(root)["checkpoints"]:
        path = root / entry["dir"]
        if (path / STATE).exists():
            out.append(path)
    return out


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def best_checkpoint(root: Path) -> Path | None:
    index = read_index(root)
    for entry in index["checkpoints"]:
        if entry["step"] == index.get("best") and (root / entry["dir"] / STATE).exists():
            return root / entry["dir"]
    return None


def save_checkpoint(
    root: Path,
    step: int,
    write: Callable[[Path], None],
    state: dict[str, Any],
    *,
    keep: int,
    val_loss: float | None = None,
    is_best: bool = False,
) -> Path:
    """Write a checkpoint for ``step`` atomically, record it, and prune all but the last ``keep`` (+ best).

    ``write(folder)`` writes the weights/optimizer/scheduler/RNG files; ``state`` becomes state.json,
    written last."""
    root.mkdir(parents=True, exist_ok=True)
    _sweep_temp(root)
    name = f"step-{step:08d}"
    final = root / name
    index = read_index(root)
    index["checkpoints"] = [e for e in index["checkpoints"] if e["dir"] != name]
    if final.exists():  # an unrecorded leftover (or a re-save of this step): replace it
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        write(tmp)
        (tmp / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    index["checkpoints"].append({"step": step, "dir": name, "time": time.time(), "val_loss": val_loss})
    if is_best:
        index["best"] = step
    write_text_atomic(root / INDEX, json.dumps(index, indent=1))
    _prune(root, index, keep)
    return final


def _prune(root: Path, index: dict[str, Any], keep: int) -> None:
    entries = index["checkpoints"]
    keep_dirs = {e["dir"] for e in entries[-keep:]} | {
        e["dir"] for e in entries if e["step"] == index.get("best")
    }
    doomed = [e for e in entries if e["dir"] not in keep_dirs]
    if not doomed:
        return
    index["checkpoints"] = [e for e in entries if e["dir"] in keep_dirs]
    write_text_atomic(root / INDEX, json.dumps(index, indent=1))  # unrecord first, then delete
    for e in doomed:
        shutil.rmtree(root / e["dir"], ignore_errors=True)
    recorded = {e["dir"] for e in index["checkpoints"]}
    for path in root.glob("step-*"):  # complete but never recorded (killed between rename and record)
        if path.name not in recorded:
            shutil.rmtree(path, ignore_errors=True)


def _sweep_temp(root: Path) -> None:
    for path in root.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
