"""``sdpa_packed`` (per-example causal attention inside packed rows) gives what transformers' masked ``sdpa``
gives: the same losses and gradients on packed rows, the same padded-batch results, the same greedy tokens
when generating with a cache."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.tokenize import tokenize_chat
from tunesmith.models import attention
from tunesmith.train.loss import naive_sum_token_loss, sum_token_loss
from tunesmith.train.packing import build_batches

pytestmark = pytest.mark.unit

_CHATS = [
    ("route my invoice", "billing"),
    ("the app crashes at login with error 100", "technical support: please send the crash log"),
    ("hi", "Hello! How can I help?"),
    ("please reset my password, I forgot it yesterday", "account management"),
    ("refund 42.50", '{"amount": 42.50, "label": "refund"}'),
]


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    attention.register()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [
        tokenize_chat(tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        for q, a in _CHATS
    ]

    def model(attn: str):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)

    return tok, examples, model


def _loss_and_grads(model, batch, loss_fn):
    model.zero_grad(set_to_none=True)
    loss, n = loss_fn(model, batch)
    (loss / n).backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_fn", [naive_sum_token_loss, sum_token_loss])
def test_packed_rows_same_loss_and_gradients_as_masked_sdpa(setup, loss_fn, monkeypatch):
    _, examples, make = setup
    (batch,) = build_batches(examples, batch_tokens=10_000, packing=True, seed=0, epoch=0)
    assert int((batch.position_ids == 0).sum()) == len(examples)  # several examples in one row
    ref_loss, ref_grads = _loss_and_grads(make("sdpa").train(), batch, loss_fn)
    splits = []
    real = attention._segments
    monkeypatch.setattr(attention, "_segments", lambda *a: splits.append(real(*a)) or splits[-1])
    model = make("sdpa_packed").train()
    assert model.config._attn_implementation == "sdpa_packed"
    loss, grads = _loss_and_grads(model, batch, loss_fn)
    n_layers = model.config.num_hidden_layers
    assert len(splits) == n_layers and all(len(s[0]) == len(examples) for s in splits)  # split per example
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and grads
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-4, atol=1e-6, msg=k)


def test_no_token_attends_across_examples(setup):
    # changing the first example must leave the logits of the later ones untouched
    _, examples, make = setup
    model = make("sdpa_packed").eval()
    (a,) = build_batches(examples, batch_tokens=10_000, packing=True, seed=0, epoch=0)
    b_ids = a.input_ids.clone()
    first_len = int((a.position_ids[0] == 0).nonzero()[1])
    b_ids[0, : first_len - 1] = (b_ids[0, : first_len - 1] + 7) % model.config.vocab_size
    with torch.no_grad():
        la = model(input_ids=a.input_ids, position_ids=a.position_ids).logits
        lb = model(input_ids=b_ids, position_ids=a.position_ids).logits
    torch.testing.assert_close(la[:, first_len:], lb[:, first_len:])
    assert not torch.allclose(la[:, : first_len - 1], lb[:, : first_len - 1])


def test_padded_batches_fall_back_to_sdpa(setup):
    _, examples, make = setup
    batches = build_batches(examples, batch_tokens=10_000, packing=False, seed=0, epoch=0)
    padded = [b for b in batches if b.attention_mask is not None and not bool(b.attention_mask.all())]
    assert padded
    ref, packed = make("sdpa").eval(), make("sdpa_packed").eval()
    with torch.no_grad():
        for b in padded:
            torch.testing.assert_close(naive_sum_token_loss(packed, b), naive_sum_token_loss(ref, b))


def test_generation_with_a_cache_matches_sdpa(setup):
    tok, _, make = setup
    enc = tok(["route my invoice please", "hi"], return_tensors="pt", padding=True, padding_side="left")
    outs = []
    for attn in ("sdpa", "sdpa_packed"):
        with torch.no_grad():
            outs.append(make(attn).eval().generate(**enc, max_new_tokens=6, do_sample=False))
    assert torch.equal(outs[0], outs[1])


def test_supports_excludes_sliding_windows_and_softcaps():
    from types import SimpleNamespace as C

    assert attention.supports(C(sliding_window=None))
    assert not attention.supports(C(sliding_window=4096, use_sliding_window=True))
    assert attention.supports(C(sliding_window=4096, use_sliding_window=False))
    assert not attention.supports(C(attn_logit_softcapping=50.0))
