"""Micro-batches for training: padding-free packing, or length-grouped padding.

Packing (the default) concatenates whole examples into one row of at most ``batch_tokens`` tokens, with no
padding at all. Two things keep a packed row equivalent to the examples trained one by one:

- ``position_ids`` restart at 0 for every example. With ``attention_mask=None`` and no cache, transformers 5
  (``masking_utils.find_packed_sequence_indices``) reads a position that does not follow its predecessor by
  +1 as the start of a new sequence and builds a block-diagonal causal mask, so no token attends across an
  example boundary (sdpa and eager alike; ``tests/unit/train/test_speed_packing.py`` proves the packed
  loss equals the unpacked one). The training loop must therefore pass ``attention_mask`` only when the
  batch has one (the padded path) and always pass ``position_ids``.
- The label of each example's first token is set to -100: the usual causal shift predicts token t from
  position t-1, and in a packed row position t-1 belongs to the previous example. In an unpacked row that
  first label is dropped by the shift anyway, so nothing trainable is lost and ``n_trained`` is identical.

Labels stay aligned with ``input_ids`` (the Hugging Face convention: ``labels[t]`` is token t); the shift
happens in the loss (``tunesmith.train.loss``). ``n_trained`` counts the positions that carry loss after
the shift, which is the token-weighting denominator for gradient accumulation.

The non-packing path groups examples of similar length (sorted inside shuffled pools of ``_POOL`` batches)
and right-pads them, so padding stays small while the order is still random.

Order is a pure function of ``(seed, epoch)`` (a private ``random.Random``, never the global RNG), so a
resumed run replays exactly the batches of the uninterrupted one: the loop skips the batches it already did.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tunesmith.data.tokenize import IGNORE_INDEX, Tokenized

_OPEN_ROWS = 8  # rows kept open for first-fit packing
_POOL = 64  # batches per length-sorting pool in the padded path: big enough to group, small enough to mix


@dataclass
class Batch:
    """One micro-batch as tensors ready for the model (CPU; the loop moves them to the device)."""

    input_ids: object  # torch.LongTensor [rows, T]
    labels: object  # torch.LongTensor [rows, T], -100 = no loss, aligned with input_ids (shift in the loss)
    position_ids: object  # torch.LongTensor [rows, T], restarting at 0 per example
    attention_mask: object | None  # torch.LongTensor [rows, T] for padded batches; None when packed
    n_trained: int  # positions that carry loss after the causal shift
    n_tokens: int  # real (non-padding) tokens
    n_examples: int = 0

    def to(self, device: object) -> Batch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)  # type: ignore[attr-defined]
        return Batch(
            self.input_ids.to(device),  # type: ignore[attr-defined]
            self.labels.to(device),  # type: ignore[attr-defined]
            self.position_ids.to(device),  # type: ignore[attr-defined]
            mask,
            self.n_trained,
            self.n_tokens,
            self.n_examples,
        )

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel()) - self.n_tokens  # type: ignore[attr-defined]


def build_batches(
    examples: Sequence[Tokenized], *, batch_tokens: int, packing: bool, seed: int, epoch: int
) -> list[Batch]:
    """All micro-batches of one epoch, in a deterministic order for ``(seed, epoch)``.

    ``batch_tokens`` bounds the tokens of a micro-batch (rows x padded length when not packing). An example
    longer than ``batch_tokens`` gets a micro-batch of its own rather than being cut (truncation is the
    tokenizer's job, via ``data.max_seq_len``). Examples without any trained token are dropped: they would
    cost compute and contribute nothing to the loss.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1 (got {batch_tokens}).")
    rng = random.Random(f"tunesmith-batches:{seed}:{epoch}")
    usable = [ex for ex in examples if len(ex.input_ids) >= 2 and _n_trained(ex.labels) > 0]
    order = list(range(len(usable)))
    rng.shuffle(order)
    if packing:
        groups = _pack(order, [len(usable[i].input_ids) for i in order], batch_tokens)
        return [_packed_batch([usable[i] for i in g]) for g in groups]
    groups = _length_groups(order, usable, batch_tokens, rng)
    return [_padded_batch([usable[i] for i in g]) for g in groups]


def _n_trained(labels: Sequence[int]) -> int:
    # the first label is never trained (nothing precedes it), matching the causal shift
    return sum(1 for x in labels[1:] if x != IGNORE_INDEX)


def _pack(order: list[int], lengths: list[int], batch_tokens: int) -> list[list[int]]:
    # First fit over a few open rows (_OPEN_ROWS), in the shuffled order: rows fill up (fewer, fuller
    # micro-batches, so bigger matmuls) while batch content stays random; a full sort (best-fit decreasing)
    # would correlate each batch with example length. Rows are never padded, so no fill level wastes compute.
    groups: list[list[int]] = []
    open_rows: list[tuple[list[int], int]] = []  # (members, tokens used)
    for idx, n in zip(order, lengths, strict=True):
        for k, (members, used) in enumerate(open_rows):
            if used + n <= batch_tokens:
                members.append(idx)
                open_rows[k] = (members, used + n)
                break
        else:
            open_rows.append(([idx], n))
            if len(open_rows) > _OPEN_ROWS:
                groups.append(open_rows.pop(0)[0])
        full = [r for r in open_rows if r[1] >= batch_tokens]
        for r in full:
            open_rows.remove(r)
            groups.append(r[0])
    groups.extend(members for members, _ in open_rows)
    return groups


def _length_groups(
    order: list[int], usable: Sequence[Tokenized], batch_tokens: int, rng: random.Random
) -> list[list[int]]:
    # Sort inside pools of roughly _POOL batches, cut batches whose padded size fits batch_tokens, then
    # shuffle the batches so lengths do not trend over the epoch.
    avg = max(1, sum(len(usable[i].input_ids) for i in order) // max(1, len(order)))
    pool_size = max(1, _POOL * max(1, batch_tokens // avg))
    groups: list[list[int]] = []
    for start in range(0, len(order), pool_size):
        pool = sorted(order[start : start + pool_size], key=lambda i: len(usable[i].input_ids))
        cur: list[int] = []
        longest = 0
        for idx in pool:
            n = len(usable[idx].input_ids)
            if cur and max(longest, n) * (len(cur) + 1) > batch_tokens:
                groups.append(cur)
                cur, longest = [], 0
            cur.append(idx)
            longest = max(longest, n)
        if cur:
            groups.append(cur)
    rng.shuffle(groups)
    return groups


def _packed_batch(items: list[Tokenized]) -> Batch:
    import torch

    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    for ex in items:
        ids.extend(ex.input_ids)
        labels.append(IGNORE_INDEX)  # see module docstring: no loss across the example boundary
        labels.extend(ex.labels[1:])
        # a preference pair (train/pref_engine.py) restarts its positions where its rejected sequence starts
        pos.extend(getattr(ex, "positions", None) or range(len(ex.input_ids)))
    return Batch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        labels=torch.tensor([labels], dtype=torch.long),
        position_ids=torch.tensor([pos], dtype=torch.long),
        attention_mask=None,
        n_trained=sum(_n_trained(ex.labels) for ex in items),
        n_tokens=len(ids),
        n_examples=len(items),
    )


def _padded_batch(items: list[Tokenized]) -> Batch:
    import torch

    width = max(len(ex.input_ids) for ex in items)
    rows = len(items)
    # pad id 0 is never seen: the attention mask hides it and its label is -100
    input_ids = torch.zeros((rows, width), dtype=torch.long)
    labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for r, ex in enumerate(items):
        n = len(ex.input_ids)
        input_ids[r, :n] = torch.tensor(ex.input_ids)
        labels[r, 1:n] = torch.tensor(ex.labels[1:])
        mask[r, :n] = 1
    position_ids = torch.arange(width).unsqueeze(0).expand(rows, -1).clone()
    return Batch(
        input_ids=input_ids,
        labels=labels,
        position_ids=position_ids,
        attention_mask=mask,
        n_trained=sum(_n_trained(ex.labels) for ex in items),
        n_tokens=sum(len(ex.input_ids) for ex in items),
        n_examples=rows,
    )


# --------------------------------------------------------------------------- optimizer steps

Step = list[list[Tokenized]]  # the examples of one optimizer step, in groups that are micro-batches when they fit


def build_steps(
    examples: Sequence[Tokenized],
    *,
    examples_per_step: int | None,
    batch_tokens: int,
    window: int,
    packing: bool,
    seed: int,
    epoch: int,
) -> list[Step]:
    """The optimizer steps of one epoch, in a deterministic order for ``(seed, epoch)``.

    With ``examples_per_step`` (example-sized steps, the default): the shuffled examples cut into steps of
    that many, whatever the micro-batch, so the memory plan can change the micro-batch without changing
    what a step trains on. Without it (token-sized steps): ``window`` micro-batches of ``batch_tokens`` as
    ``build_batches`` makes them. Examples without a trained token are dropped (see ``build_batches``).
    """
    if examples_per_step is None:
        groups = _groups(examples, batch_tokens, packing, seed, epoch)
        return [groups[i : i + window] for i in range(0, len(groups), window)]
    if examples_per_step < 1:
        raise ValueError(f"examples_per_step must be >= 1 (got {examples_per_step}).")
    rng = random.Random(f"tunesmith-steps:{seed}:{epoch}")
    usable = [ex for ex in examples if len(ex.input_ids) >= 2 and _n_trained(ex.labels) > 0]
    rng.shuffle(usable)
    return [[usable[i : i + examples_per_step]] for i in range(0, len(usable), examples_per_step)]


def step_batches(step: Step, *, micro_tokens: int, packing: bool, world: int = 1) -> list[Batch]:
    """The micro-batches of one optimizer step: each group as one batch when it fits ``micro_tokens``
    (rows x padded length when not packing), else split in order into batches that do (an example longer
    than ``micro_tokens`` gets a batch of its own). With ``world`` processes a single group is split into
    at least ``world`` batches where it can be, so every process gets work."""
    out: list[Batch] = []
    for group in step:
        cap = micro_tokens
        if len(step) == 1 and world > 1:
            total = sum(len(ex.input_ids) for ex in group)
            cap = min(cap, max(max(len(ex.input_ids) for ex in group), math.ceil(total / world)))
        for part in _split(group, cap, packing):
            out.append(_packed_batch(part) if packing else _padded_batch(part))
    return out


def _groups(examples: Sequence[Tokenized], batch_tokens: int, packing: bool, seed: int, epoch: int) -> list[list[Tokenized]]:
    # the groups build_batches makes, as example lists
    rng = random.Random(f"tunesmith-batches:{seed}:{epoch}")
    usable = [ex for ex in examples if len(ex.input_ids) >= 2 and _n_trained(ex.labels) > 0]
    order = list(range(len(usable)))
    rng.shuffle(order)
    if packing:
        idx = _pack(order, [len(usable[i].input_ids) for i in order], batch_tokens)
    else:
        idx = _length_groups(order, usable, batch_tokens, rng)
    return [[usable[i] for i in g] for g in idx]


def _split(group: list[Tokenized], cap: int, packing: bool) -> list[list[Tokenized]]:
    size = sum(len(ex.input_ids) for ex in group) if packing else max(len(ex.input_ids) for ex in group) * len(group)
    if size <= cap:
        return [group]
    if packing:  # first fit in the step's order: deterministic, and rows fill up
        idx = _pack(list(range(len(group))), [len(ex.input_ids) for ex in group], cap)
        return [[group[i] for i in g] for g in idx]
    ordered = sorted(group, key=lambda ex: len(ex.input_ids))  # padded: group by length to waste little
    parts: list[list[Tokenized]] = []
    cur: list[Tokenized] = []
    for ex in ordered:
        if cur and max(len(ex.input_ids), len(cur[-1].input_ids)) * (len(cur) + 1) > cap:
            parts.append(cur)
            cur = []
        cur.append(ex)
    return parts + ([cur] if cur else [])
