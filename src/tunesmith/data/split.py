"""`tunesmith data split`: a seeded hold-out split that never puts copies of one example on both sides.

Design (docs/data.md):
- Examples are first grouped: exact duplicates, near-duplicates (the same MinHash pass as ``data check``)
  and examples that share the same input all form one group, and a group goes to one side as a whole.
  Like ``data check``, this judges what varies: content shared by (nearly) all examples (``shared.py``)
  is left out, and near-identical inputs with different answers (contrastive pairs) may be split.
- For labelled data (classification, or chat whose answers are a small set of short labels) groups are
  stratified by label: each label gets ``round(fraction * count)`` hold-out examples as nearly as whole
  groups allow, and a label with a single group stays in training.
- Groups are shuffled with ``random.Random(seed)``: the same file and seed give the same split.
- The same split in memory (``holdout_split``) is the one every training method (sft, cpt, dpo, reward,
  ppo's probe prompts aside) and ``tunesmith plan`` use when the config gives no ``data.holdout``, so the
  hold-out of ``train`` and the one of ``data split`` never differ in kind.
- The output keeps the input's format: JSONL lines are copied byte for byte (line ends as LF, no BOM),
  CSV rows keep their columns, raw text becomes ``{"text": ...}`` lines.
- Nothing is overwritten by surprise: an ``--out`` whose ``train.*`` or ``holdout.*`` is the input file is
  refused (always), and one that would replace an earlier split is refused unless ``force``. Both files are
  written to temporary names first and renamed into place together.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import Task
from tunesmith.data.formats import Columns, LoadedData, load_records_or_raise
from tunesmith.data.quality import infer_labels, normalize_views, similar, view_of
from tunesmith.errors import TunesmithError
from tunesmith.textio import decode_text, read_bounded, split_lines


@dataclass(frozen=True)
class SplitResult:
    train_path: Path
    holdout_path: Path
    n_train: int
    n_holdout: int
    stratified: bool
    groups_kept_together: int  # groups of 2+ examples that were kept on one side
    holdout_by_label: dict[str, int]


def split_file(
    path: Path | str,
    out_dir: Path | str,
    holdout: float = 0.2,
    seed: int = 0,
    task: Task | None = None,
    columns: Columns = Columns(),
    *,
    force: bool = False,
) -> SplitResult:
    """Split ``path`` into ``out_dir/train.*`` and ``out_dir/holdout.*``; see the module docstring.

    Raises:
        TunesmithError: for data with errors; (exit code 2) for a bad fraction, an ``out_dir`` that is a
            file, outputs that would overwrite the input, or an earlier split without ``force``.
    """
    if not 0 < holdout < 1:
        raise TunesmithError(
            f"--holdout {holdout} is not a fraction.", "Use a value between 0 and 1, e.g. 0.2.", exit_code=2
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TunesmithError(
            f"--out {out} is a file.", "Pass a folder; it is created when missing.", exit_code=2
        )
    targets = output_paths(Path(path), out)
    refuse_overwrite(Path(path), targets, force)
    data = load_records_or_raise(path, task, columns)
    groups, labels, held = _split(data, holdout, seed)
    out.mkdir(parents=True, exist_ok=True)
    train_idx = [i for i in range(len(data.records)) if i not in held]
    hold_idx = sorted(held)
    train_path, hold_path = _write(data, targets, train_idx, hold_idx)
    by_label: dict[str, int] = defaultdict(int)
    if labels is not None:
        for i in hold_idx:
            by_label[labels[i]] += 1
    return SplitResult(
        train_path,
        hold_path,
        len(train_idx),
        len(hold_idx),
        labels is not None,
        sum(1 for g in groups if len(g) > 1),
        dict(by_label),
    )


def holdout_split(
    data: LoadedData, fraction: float, seed: int, *, at_least_one: bool = False
) -> tuple[list[int], list[int]]:
    """``(train, hold-out)`` indices into ``data.records``: the split of ``data split`` (module docstring),
    for callers that split in memory (training of every method, ``tunesmith plan``).

    ``at_least_one``: when the fraction rounds to no example but there are two or more groups, the
    smallest group whose label keeps another group in training is held out (training then still has a
    hold-out to validate on).
    """
    _, _, held = _split(data, fraction, seed, at_least_one=at_least_one)
    return [i for i in range(len(data.records)) if i not in held], sorted(held)


def _split(
    data: LoadedData, fraction: float, seed: int, *, at_least_one: bool = False
) -> tuple[list[list[int]], list[str] | None, set[int]]:
    groups = _groups(data) if data.records else []
    labels = _labels(data) if data.records else None
    held = _pick_holdout(groups, labels, fraction, seed)
    if at_least_one and not held and len(groups) > 1:
        held = set(_spare_group(groups, labels, seed))
    return groups, labels, held


def output_paths(path: Path, out: Path) -> tuple[Path, Path]:
    """Where the split of ``path`` goes: ``train.csv``/``.tsv`` for tables, else ``train.jsonl``."""
    suffix = path.suffix.lower()
    ext = suffix if path.is_file() and suffix in (".csv", ".tsv") else ".jsonl"
    return out / f"train{ext}", out / f"holdout{ext}"


def refuse_overwrite(path: Path, targets: tuple[Path, ...], force: bool) -> None:
    """Refuse outputs that are the input file (always) or that exist already (unless ``force``).

    Raises:
        TunesmithError: (exit code 2) naming the file and the way out.
    """
    for t in targets:
        if t.exists() and path.exists() and os.path.samefile(t, path):
            raise TunesmithError(
                f"--out {t.parent} would write {t}, which is the input file; nothing was written.",
                f"Keep all examples in another file (e.g. {path.with_name('examples' + path.suffix)}) and "
                "split that, or write the split to another folder.",
                exit_code=2,
            )
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise TunesmithError(
            f"{' and '.join(existing)} already {'exist' if len(existing) > 1 else 'exists'} (an earlier split?); "
            "nothing was written.",
            "Pass --force to replace the earlier split (its hold-out rows may then end up in training), "
            "or write to another --out folder.",
            exit_code=2,
        )


def _groups(data: LoadedData) -> list[list[int]]:
    """Index groups that must stay together (duplicates, near-duplicates, same input), judged like
    ``data check``'s ``holdout_leak``: on what varies, without the content shared by all examples (a fixed
    system prompt would otherwise make every short example a near-duplicate of every other)."""
    views = [view_of(r.line, r.data, data.task) for r in data.records]
    norm = normalize_views(views)
    near = similar(norm)
    parent = list(range(len(views)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ids in (near.examples, near.exact):
        for i, g in enumerate(ids.tolist()):
            parent[find(i)] = find(int(g))
    first_with: dict[str, int] = {}
    for i, key in enumerate(norm.vary):
        if key:
            parent[find(i)] = find(first_with.setdefault(key, i))
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(views)):
        members[find(i)].append(i)
    return sorted(members.values(), key=lambda g: g[0])


def _labels(data: LoadedData) -> list[str] | None:
    views = infer_labels([view_of(r.line, r.data, data.task) for r in data.records])
    return [v.label for v in views] if views and views[0].label is not None else None  # type: ignore[misc]


def _pick_holdout(groups: list[list[int]], labels: list[str] | None, fraction: float, seed: int) -> set[int]:
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for g in groups:
        strata[labels[g[0]] if labels else ""].append(g)
    rng = random.Random(seed)
    held: set[int] = set()
    for key in sorted(strata):
        gs = strata[key]
        rng.shuffle(gs)
        total = sum(len(g) for g in gs)
        target = round(fraction * total)
        if len(gs) < 2:
            continue  # one group: it must stay in training
        taken = 0
        for g in gs[:-1]:  # the last group always stays in training
            if taken >= target:
                break
            if taken + len(g) <= target or taken + len(g) - target < target - taken:
                held.update(g)
                taken += len(g)
    return held


def _spare_group(groups: list[list[int]], labels: list[str] | None, seed: int) -> list[int]:
    """The smallest group (ties broken by a seeded shuffle) that is not its label's only group; when every
    label has one group, the smallest group of all (one group always stays in training)."""
    per_label: dict[str, int] = defaultdict(int)
    for g in groups:
        per_label[labels[g[0]] if labels else ""] += 1
    order = list(groups)
    random.Random(seed).shuffle(order)
    spare = [g for g in order if per_label[labels[g[0]] if labels else ""] > 1] or order
    return min(spare, key=len)


def _write(
    data: LoadedData, paths: tuple[Path, Path], train: list[int], hold: list[int]
) -> tuple[Path, Path]:
    suffix = data.path.suffix.lower()
    if data.path.is_file() and suffix in (".csv", ".tsv"):
        contents = _csv_contents(data, suffix, train, hold)
    elif data.path.is_file() and data.task != "text" or suffix in (".jsonl", ".json"):
        raw = split_lines(read_bounded(data.path, what="Data file"))  # the reader's own line numbering
        contents = [b"".join(raw[data.records[i].line - 1] + b"\n" for i in idx) for idx in (train, hold)]
    else:
        contents = [
            "".join(
                json.dumps({"text": data.records[i].data["text"]}, ensure_ascii=False) + "\n" for i in idx
            ).encode("utf-8")
            for idx in (train, hold)
        ]
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in paths]
    try:
        for tmp, body in zip(tmps, contents, strict=True):
            tmp.write_bytes(body)
        for tmp, p in zip(tmps, paths, strict=True):
            os.replace(tmp, p)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    return paths


def _csv_contents(data: LoadedData, suffix: str, train: list[int], hold: list[int]) -> list[bytes]:
    delimiter = "\t" if suffix == ".tsv" else ","
    text = decode_text(read_bounded(data.path, what="Data file")).text
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = {}
    for row in reader:
        rows[reader.line_num] = row
    header = reader.fieldnames or []
    out = []
    for idx in (train, hold):
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=header, delimiter=delimiter, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows[data.records[i].line] for i in idx)
        out.append(buf.getvalue().encode("utf-8"))
    return out
