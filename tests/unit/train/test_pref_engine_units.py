"""Pure parts of the preference engine: prompt-first truncation, segments of a packed row, pair keys."""

from __future__ import annotations

import pytest

from tunesmith.data.tokenize import IGNORE_INDEX as X
from tunesmith.train.packing import build_batches
from tunesmith.train.pref_engine import PairExample, pair_keys, segment_ids, truncate_prompt_first

pytestmark = pytest.mark.unit


def test_short_sequences_are_kept_whole() -> None:
    ids, labels = [1, 2, 3, 4], [X, X, 3, 4]
    assert truncate_prompt_first(ids, labels, 4) == (ids, labels, False)


def test_the_prompt_is_cut_from_the_left_first() -> None:
    ids = list(range(10))
    labels = [X] * 7 + [7, 8, 9]
    out_ids, out_labels, cut = truncate_prompt_first(ids, labels, 5)
    assert cut and out_ids == [5, 6, 7, 8, 9] and out_labels == [X, X, 7, 8, 9]


def test_an_answer_longer_than_the_limit_keeps_one_prompt_token_and_its_start() -> None:
    ids = list(range(10))
    labels = [X, X] + list(range(2, 10))
    out_ids, out_labels, cut = truncate_prompt_first(ids, labels, 4)
    assert cut and out_ids == [1, 2, 3, 4] and out_labels == [X, 2, 3, 4]


def _pair(chosen: list[int], rejected: list[int], answer: int) -> PairExample:
    def lab(ids: list[int]) -> list[int]:
        return [X] * (len(ids) - answer) + ids[-answer:]

    return PairExample(
        input_ids=chosen + rejected,
        labels=lab(chosen) + [X] + lab(rejected)[1:],
        n_tokens_full=len(chosen) + len(rejected),
        positions=list(range(len(chosen))) + list(range(len(rejected))),
        split=len(chosen),
    )


def test_a_packed_row_restarts_positions_per_sequence_and_keys_find_each_pair() -> None:
    pairs = [_pair([5, 6, 7], [5, 6, 8, 9], 1), _pair([1, 2, 3, 4], [1, 2], 1), _pair([9, 9], [9, 8], 1)]
    (batch,) = build_batches(pairs, batch_tokens=100, packing=True, seed=0, epoch=0)
    pos = batch.position_ids[0]
    assert int((pos == 0).sum()) == 6  # two sequences per pair
    seg = segment_ids(pos).tolist()
    assert seg == sorted(seg) and seg[0] == 0 and seg[-1] == 5 and len(seg) == 17  # 3+4 + 4+2 + 2+2 tokens
    assert sorted(pair_keys(batch)) == sorted(p.key for p in pairs)
    # every trained label belongs to an answer; the first token of each sequence is never trained
    starts = (pos == 0).nonzero().squeeze(1).tolist()
    assert all(int(batch.labels[0, s]) == X for s in starts)
    assert batch.n_examples == 3
