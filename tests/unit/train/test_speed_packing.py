"""Packing and length grouping: same loss as the examples one by one, no cross-example attention, and a
deterministic order per (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.tokenize import IGNORE_INDEX, Tokenized, tokenize_chat
from tunesmith.train.loss import naive_sum_token_loss
from tunesmith.train.packing import build_batches

pytestmark = pytest.mark.unit

_CHATS = [
    ("route my invoice", "billing"),
    ("the app crashes at login with error 100", "technical support: please send the crash log"),
    ("hi", "Hello! How can I help?"),
    ("please reset my password, I forgot it yesterday", "account management"),
    ("refund 42.50", '{"amount": 42.50, "label": "refund"}'),
    ("yes or no?", "no"),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [
        tokenize_chat(tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        for q, a in _CHATS
    ]

    def model(attn: str):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()

    return examples, model


def _one_by_one(model, examples):
    total, count = torch.zeros(()), 0
    for ex in examples:
        (b,) = build_batches([ex], batch_tokens=10_000, packing=True, seed=0, epoch=0)
        loss, n = naive_sum_token_loss(model, b)
        total, count = total + loss, count + n
    return total, count


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked(tiny, attn):
    examples, make = tiny
    model = make(attn)
    batches = build_batches(examples, batch_tokens=10_000, packing=True, seed=1, epoch=0)
    assert len(batches) == 1 and batches[0].input_ids.shape[0] == 1  # one padding-free row
    packed, n_packed = naive_sum_token_loss(model, batches[0])
    ref, n_ref = _one_by_one(model, examples)
    assert (
        n_packed
        == n_ref
        == sum(ex.n_trained for ex in examples) - sum(ex.labels[0] != IGNORE_INDEX for ex in examples)
    )
    torch.testing.assert_close(packed, ref, rtol=1e-5, atol=1e-4)


def test_packed_gradients_equal_unpacked(tiny):
    examples, make = tiny
    model = make("sdpa")
    (b,) = build_batches(examples, batch_tokens=10_000, packing=True, seed=0, epoch=0)
    naive_sum_token_loss(model, b)[0].backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _one_by_one(model, examples)[0].backward()
    for g_packed, p in zip(packed_grads, model.parameters(), strict=True):
        torch.testing.assert_close(g_packed, p.grad, rtol=1e-4, atol=1e-5)


def test_packing_blocks_cross_example_attention(tiny):
    """Changing the first example must not change the logits of the second one in the same row."""
    examples, make = tiny
    model = make("sdpa")
    a, b = examples[0], examples[1]
    other = Tokenized(list(reversed(a.input_ids)), list(a.labels), len(a.input_ids))
    (row1,) = build_batches([a, b], batch_tokens=10_000, packing=True, seed=0, epoch=0)
    (row2,) = build_batches([other, b], batch_tokens=10_000, packing=True, seed=0, epoch=0)
    with torch.no_grad():
        l1 = model(input_ids=row1.input_ids, position_ids=row1.position_ids).logits[0]
        l2 = model(input_ids=row2.input_ids, position_ids=row2.position_ids).logits[0]
    first_is_b = row1.input_ids[0, : len(b.input_ids)].tolist() == b.input_ids
    sl = slice(0, len(b.input_ids)) if first_is_b else slice(len(a.input_ids), None)
    torch.testing.assert_close(l1[sl], l2[sl], rtol=1e-5, atol=1e-5)
    assert row1.position_ids[0].tolist() == (
        list(range(len(b.input_ids))) + list(range(len(a.input_ids)))
        if first_is_b
        else list(range(len(a.input_ids))) + list(range(len(b.input_ids)))
    )


def test_padded_length_groups_equal_unpacked(tiny):
    examples, make = tiny
    model = make("sdpa")
    batches = build_batches(examples, batch_tokens=64, packing=False, seed=0, epoch=0)
    assert len(batches) > 1 and all(b.attention_mask is not None for b in batches)
    assert all(b.input_ids.numel() <= 64 or b.n_examples == 1 for b in batches)
    total = sum(naive_sum_token_loss(model, b)[0] for b in batches)
    ref, n_ref = _one_by_one(model, examples)
    assert sum(b.n_trained for b in batches) == n_ref
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-4)


def test_order_is_deterministic_per_seed_and_epoch():
    exs = [Tokenized([1] * n, [1] * n, n) for n in range(3, 60)]
    for packing in (True, False):

        def order(seed, epoch, packing=packing):
            bs = build_batches(exs, batch_tokens=100, packing=packing, seed=seed, epoch=epoch)
            return [b.input_ids.tolist() for b in bs], bs

        first, bs = order(3, 0)
        assert first == order(3, 0)[0]
        assert first != order(3, 1)[0] and first != order(4, 0)[0]
        assert sum(b.n_tokens for b in bs) == sum(len(e.input_ids) for e in exs)  # every example once
        assert sum(b.n_examples for b in bs) == len(exs)
        if packing:
            assert all(b.n_tokens <= 100 for b in bs) and all(b.padded_tokens == 0 for b in bs)


def test_long_example_alone_and_untrained_dropped():
    long = Tokenized(list(range(50)), list(range(50)), 50)
    empty = Tokenized([1, 2, 3], [IGNORE_INDEX] * 3, 3)
    short = Tokenized([5, 6, 7], [5, 6, 7], 3)
    bs = build_batches([long, empty, short], batch_tokens=20, packing=True, seed=0, epoch=0)
    assert sorted(b.n_tokens for b in bs) == [3, 50]
    assert sorted(b.n_trained for b in bs) == [2, 49]
    with pytest.raises(ValueError, match="batch_tokens"):
        build_batches([short], batch_tokens=0, packing=True, seed=0, epoch=0)
