"""Near-duplicate grouping (MinHash + LSH) and the PII validators, directly."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from tunesmith.data import neardup
from tunesmith.data.neardup import find_groups, normalize_many, normalize_text
from tunesmith.data.pii import find_pii, iban_ok, luhn_ok

pytestmark = pytest.mark.unit


def _texts(n: int, seed: int = 0, words: int = 30) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return [" ".join(rng.choices(vocab, k=words)) for _ in range(n)]


def test_exact_after_normalisation_and_near_duplicates():
    texts = _texts(200)
    texts[10] = texts[3].upper() + "!!"  # exact after normalisation
    texts[20] = texts[5] + " one more"  # near
    texts[30] = " ".join(texts[7].split()[:15])  # half of a text: not a near-duplicate
    g = find_groups(texts)
    assert g.members("exact") == [[3, 10]]
    assert g.members("group") == [[3, 10], [5, 20]]


def test_normalize_many_matches_one_by_one():
    texts = ["Hello, World!", "", "tab\tand\nnewline", "ÜBER café", "a\x1eb"]
    assert normalize_many(texts) == [normalize_text(t) for t in texts]


def test_normalize_many_fast_path_matches_the_regex_on_random_text():
    # ASCII batches take the byte-translation path, batches with other characters the regex: both must
    # give exactly normalize_text's answer, across batch boundaries
    rng = random.Random(3)
    alphabet = "abcXYZ019_ ,.;:!?'\"-\t\n\r\x0b\x0c/()[]{}@#$%^&*+=<>|~`" + "éÜß€中文\u00a0\u2003"
    texts = []
    for i in range(2 * neardup._NORM_BATCH + 17):
        pool = alphabet if i % 700 == 0 else alphabet[:-9]  # mostly ASCII batches, a few mixed ones
        texts.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 40))))
    assert normalize_many(texts) == [normalize_text(t) for t in texts]


def test_word_hashes_are_one_id_per_distinct_word_across_chunks(monkeypatch):
    monkeypatch.setattr(neardup, "_WORD_CHUNK", 64)  # many chunks, so words repeat across them
    vocab = [f"w{i}" for i in range(20_000)] + ["", "ünïcode", "a", "aa", "ab", "ba"]
    norm = [" ".join(vocab[j : j + 7]) for j in range(0, len(vocab), 7)] + ["w5 w5 ab", "ba"]
    words = " ".join(norm).split(" ")
    ids = neardup._word_hashes(norm, len(words))
    by_word: dict[str, set[int]] = {}
    for w, h in zip(words, ids.tolist(), strict=True):
        by_word.setdefault(w, set()).add(h)
    assert all(len(v) == 1 for v in by_word.values())  # the same word: the same id, wherever it is
    assert len({next(iter(v)) for v in by_word.values()}) == len(by_word)  # distinct words: distinct ids


def test_lsh_candidates_are_linear_in_a_bucket():
    # 2,000 identical-template texts land in the same buckets; star comparison keeps candidates ~n per band
    texts = ["the same template text with a few shared words " + str(i % 3) for i in range(2000)]
    sh, off = neardup._shingles(
        normalize_many(sorted(set(texts))) + [normalize_text(t) + f" x{i}" for i, t in enumerate(texts)]
    )
    pairs = neardup._candidates(neardup._minhash(sh, off, 0))
    assert len(pairs) <= neardup.BANDS * len(texts) * 2  # all-pairs would be ~2,000,000


def test_recall_of_lsh_on_many_random_near_pairs():
    base = _texts(300, seed=1, words=40)
    variants = [t.replace(t.split()[17], "changed", 1) for t in base]  # one word changed: Jaccard ~0.9
    g = find_groups(base + variants)
    found = sum(1 for i in range(300) if g.group[i] == g.group[300 + i])
    assert found >= 297  # LSH may miss a pair with probability ~1e-4 each


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1112", False),
        ("5500 0000 0000 0004", True),
        ("0000 0000 0000 0000", False),
        ("1234", False),
    ],
)
def test_luhn(number, ok):
    assert luhn_ok(number) is ok


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("GB83 WEST 1234 5698 7654 32", False),
        ("DE89370400440532013000", True),
        ("DE8937040044053201300", False),
        ("FR14 2004 1010 0505 0001 3M02 606", True),
    ],
)
def test_iban(iban, ok):
    assert iban_ok(iban) is ok


def test_pii_ignores_dates_versions_and_order_numbers():
    assert find_pii("Order 12345 shipped on 2024-01-31, version 1.2.3, ticket 12-34, total 99.95") == []
    assert {h.kind for h in find_pii("reach me: a.b@example.com or (555) 123-4567")} == {"email", "phone"}


def test_committed_assets_are_current(tmp_path):
    assets = Path(__file__).parents[2] / "assets"
    sys.path.insert(0, str(assets))
    from make_data_assets import write

    for p in write(tmp_path):
        rel = p.relative_to(tmp_path)
        assert (assets / "data" / rel).read_bytes() == p.read_bytes(), (
            f"tests/assets/data/{rel} is stale: run python tests/assets/make_data_assets.py"
        )
