"""Training without ``data.holdout`` splits with ``data split``'s splitter: near-duplicates stay on one side,
labels are stratified, and the hold-out is the very one ``data split`` writes for the same file and seed."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.data.formats import load_records_or_raise
from tunesmith.data.split import holdout_split, split_file
from tunesmith.train.pref_common import load_pairs

pytestmark = pytest.mark.unit

VOCAB = [
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "ne", "po", "ru", "si", "tu")
    for b in ("b", "d", "g", "m", "r", "z")
]


def _sentence(i: int, n: int = 12) -> str:
    """Distinct words per i, so unrelated examples share little (near-duplicates only where made on purpose)."""
    rng = random.Random(i)
    return " ".join(rng.choice(VOCAB) + str(rng.randrange(100)) for _ in range(n))


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _labelled_rows() -> tuple[list[dict], set[str]]:
    rows = [{"text": _sentence(i), "label": "billing"} for i in range(40)]
    rows += [{"text": _sentence(1000 + i), "label": "outage"} for i in range(10)]
    base = _sentence(5000)
    near = {base, base + " thanks", base + " please", "hello " + base}  # one question, four wordings
    rows += [{"text": t, "label": "billing"} for t in sorted(near)]
    return rows, near


def test_sft_without_holdout_keeps_near_duplicates_together_and_stratifies(tmp_path: Path) -> None:
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.data import prepare_data

    rows, near = _labelled_rows()
    path = _write(tmp_path / "tickets.jsonl", rows)
    tok = load_tokenizer("tiny")
    for seed in range(4):  # wherever the seed puts the near-duplicate group, it is never cut
        cfg = load_config(
            None,
            ["model.name=tiny", f"data.train={path}", "data.holdout_fraction=0.2", f"data.seed={seed}"],
        )
        data = prepare_data(cfg, tok)
        held = [_user_and_label(t.text) for t in data.holdout]
        held_texts = {text for text, _ in held}
        assert held_texts & near in (set(), near), seed
        labels = Counter(label for _, label in held)
        assert labels["outage"] == 2  # round(0.2 * 10), stratified
        assert labels["billing"] in (8, 9, 10, 11, 12) and len(data.train) + len(data.holdout) == len(rows)
        # the same rows as `tunesmith data split FILE --holdout 0.2 --seed N`
        split = split_file(path, tmp_path / f"split{seed}", holdout=0.2, seed=seed)
        written = [json.loads(x)["text"] for x in split.holdout_path.read_text().splitlines()]
        assert sorted(written) == sorted(held_texts)


def _user_and_label(text: str) -> tuple[str, str]:
    user = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", text, re.DOTALL)
    label = re.search(r"<\|im_start\|>assistant\n(.*?)<\|im_end\|>", text, re.DOTALL)
    assert user and label, text
    return user.group(1), label.group(1).strip()


def test_preference_pairs_without_holdout_use_the_same_splitter(tmp_path: Path) -> None:
    pairs = [
        {"prompt": _sentence(i), "chosen": _sentence(200 + i, 6), "rejected": _sentence(400 + i, 6)}
        for i in range(20)
    ]
    base = _sentence(9000)
    near = {base, base + " thanks", base + " please"}
    pairs += [{"prompt": p, "chosen": "yes indeed", "rejected": "no way"} for p in sorted(near)]
    path = _write(tmp_path / "pairs.jsonl", pairs)
    for seed in range(4):
        cfg = load_config(
            None, [f"data.train={path}", "data.holdout_fraction=0.3", "train.method=dpo", f"data.seed={seed}"]
        )
        split = load_pairs(cfg)
        held = {p["prompt"][-1]["content"] for p in split.holdout}
        assert held & near in (set(), near), seed
        _, hold_idx = holdout_split(load_records_or_raise(path, "preference"), 0.3, seed, at_least_one=True)
        assert held == {pairs[i]["prompt"] for i in hold_idx}
        assert len(split.train) + len(split.holdout) == len(pairs) and split.train and split.holdout


def test_holdout_split_is_seeded_and_keeps_one_example_out_when_asked(tmp_path: Path) -> None:
    rows = [{"prompt": _sentence(i), "completion": _sentence(100 + i, 4)} for i in range(20)]
    data = load_records_or_raise(_write(tmp_path / "c.jsonl", rows), "completion")
    a = holdout_split(data, 0.25, seed=1)
    assert a == holdout_split(data, 0.25, seed=1) and a != holdout_split(data, 0.25, seed=2)
    assert len(a[1]) == 5 and sorted(a[0] + a[1]) == list(range(20))
    two = load_records_or_raise(_write(tmp_path / "two.jsonl", rows[:2]), "completion")
    assert holdout_split(two, 0.2, 0) == ([0, 1], [])  # 0.2 of 2 rounds to none
    train, hold = holdout_split(two, 0.2, 0, at_least_one=True)  # what training asks for
    assert len(hold) == 1 and sorted(train + hold) == [0, 1]
    one = load_records_or_raise(_write(tmp_path / "one.jsonl", rows[:1]), "completion")
    assert holdout_split(one, 0.5, 0, at_least_one=True) == ([0], [])


def test_ppo_probe_prompts_use_the_same_splitter() -> None:
    from tunesmith.train.rl_common import split_probe

    prompts = [[{"role": "user", "content": _sentence(i)}] for i in range(20)]
    base = _sentence(7000)
    near = [[{"role": "user", "content": t}] for t in (base, base + " thanks", base + " please")]
    prompts += near
    for seed in range(4):
        train, probe = split_probe(prompts, seed)
        assert 1 <= len(probe) <= 6 and len(train) + len(probe) == len(prompts)
        assert sum(p in probe for p in near) in (0, 3), seed  # the near-copies stay on one side
        assert (train, probe) == split_probe(prompts, seed)
    assert split_probe(prompts[:1], 0) == ([], prompts[:1])  # one prompt: it is the probe (as before)
