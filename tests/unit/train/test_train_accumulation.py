"""Token-weighted gradient accumulation: one micro-batch of 8 examples and 8 micro-batches of 1 give the
same gradients (on the tiny model, full fine-tuning so every weight is compared)."""

from __future__ import annotations

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat
from tunesmith.models.load import load_tokenizer
from tunesmith.train.adapters import build_trainable
from tunesmith.train.loop import accumulate_gradients
from tunesmith.train.loss import sum_token_loss
from tunesmith.train.packing import build_batches

pytestmark = pytest.mark.unit


def _examples(tok):  # noqa: ANN001, ANN202
    answers = [
        "yes",
        "no",
        "a much longer answer with many more tokens in it",
        "ok",
        "fine thanks",
        "no",
        "maybe so",
        "yes indeed",
    ]
    return [
        tokenize_chat(
            tok, [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": a}]
        )
        for i, a in enumerate(answers)
    ]


def _grads(model) -> dict[str, torch.Tensor]:  # noqa: ANN001
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def test_batch_8_accum_1_equals_batch_1_accum_8() -> None:
    cfg = load_config(None, ["model.name=tiny", "train.finetune=full"])
    model = build_trainable(cfg)
    examples = _examples(load_tokenizer("tiny"))
    one = build_batches(examples, batch_tokens=10**6, packing=True, seed=0, epoch=0)
    eight = build_batches(examples, batch_tokens=1, packing=True, seed=0, epoch=0)
    assert (len(one), len(eight)) == (1, 8)

    loss_a, n_a, _, _ = accumulate_gradients(model, one)
    grads_a = _grads(model)
    loss_b, n_b, _, _ = accumulate_gradients(model, eight)
    grads_b = _grads(model)
    assert n_a == n_b == sum(b.n_trained for b in eight)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-7, msg=name)

    # The per-micro-batch mean (mean of means) is what token weighting fixes: it must differ here,
    # or this test could not tell the two apart.
    for batch in eight:
        loss, n = sum_token_loss(model, batch)
        (loss / n / len(eight)).backward()
    naive = _grads(model)
    name = "model.embed_tokens.weight"
    assert not torch.allclose(naive[name], grads_a[name], rtol=1e-3, atol=1e-7)


def test_eos_is_trained_when_pad_equals_eos() -> None:
    tok = load_tokenizer("tiny")
    tok.pad_token = tok.eos_token  # the common setup that silently drops EOS from the labels elsewhere
    ex = tokenize_chat(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}])
    trained = [t for t in ex.labels if t != IGNORE_INDEX]
    assert trained[-1] == tok.eos_token_id
    (batch,) = build_batches([ex], batch_tokens=1024, packing=False, seed=0, epoch=0)
    assert int((batch.labels == tok.eos_token_id).sum()) == 1 and batch.n_trained == len(trained)
