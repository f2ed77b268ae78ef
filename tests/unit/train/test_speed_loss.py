"""The trained-positions-only chunked loss equals the naive full-logits loss, in value and gradients, for
plain, LoRA, DoRA, QLoRA, full fine-tuning and DDP-wrapped models."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.tokenize import Tokenized
from tunesmith.train import loss as loss_mod
from tunesmith.train.loss import TokenLossModule, naive_sum_token_loss, sum_token_loss
from tunesmith.train.packing import build_batches

pytestmark = pytest.mark.unit


def _examples(vocab: int, seed: int = 0) -> list[Tokenized]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in (7, 19, 4, 30, 12):
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        labels = [-100] * (n // 3) + ids[n // 3 :]  # a prompt, then the trained answer
        out.append(Tokenized(ids, labels, n))
    return out


def _model(tiny_model_dir, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, **kw)


def _lora(model, **kw):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **kw)
    return get_peft_model(model, cfg)


def _compare(model, batches, rtol=1e-5):
    params = [p for p in model.parameters() if p.requires_grad]
    assert params
    for b in batches:
        model.zero_grad()
        fast, n_fast = sum_token_loss(model, b)
        fast.backward()
        g_fast = [p.grad.clone() for p in params]
        model.zero_grad()
        ref, n_ref = naive_sum_token_loss(model, b)
        ref.backward()
        assert n_fast == n_ref == b.n_trained > 0
        torch.testing.assert_close(fast, ref, rtol=rtol, atol=1e-4)
        for gf, p in zip(g_fast, params, strict=True):
            torch.testing.assert_close(gf, p.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("packing", [True, False])
def test_full_finetune_matches_naive(tiny_model_dir, packing, monkeypatch):
    monkeypatch.setattr(loss_mod, "_CHUNK_ELEMS", 512 * 8)  # force several chunks on the tiny vocabulary
    model = _model(tiny_model_dir)
    assert (
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    )  # tied: head grads matter
    batches = build_batches(
        _examples(model.config.vocab_size), batch_tokens=40, packing=packing, seed=0, epoch=0
    )
    assert len(batches) > 1
    _compare(model, batches)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_adapters_match_naive(tiny_model_dir, kind):
    model = _lora(_model(tiny_model_dir), use_dora=kind == "dora")
    batches = build_batches(
        _examples(model.config.vocab_size), batch_tokens=64, packing=True, seed=0, epoch=0
    )
    _compare(model, batches)


def test_qlora_matches_naive(tiny_model_dir):
    from transformers import BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    from tunesmith.models.load import keep_4bit_layout

    base = _model(tiny_model_dir, quantization_config=q, dtype=torch.float32)
    keep_4bit_layout(base)  # as load_causal_lm does: no AVX512-BF16 repack of layers narrower than a block
    model = _lora(base)
    batches = build_batches(
        _examples(model.config.vocab_size), batch_tokens=64, packing=True, seed=0, epoch=0
    )
    _compare(model, batches, rtol=1e-4)


def test_adapter_on_head_uses_checkpointed_chunks(tiny_model_dir, monkeypatch):
    from peft import LoraConfig, get_peft_model

    monkeypatch.setattr(loss_mod, "_CHUNK_ELEMS", 512 * 8)
    model = get_peft_model(
        _model(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False),
    )
    assert type(model.get_base_model().get_output_embeddings()) is not torch.nn.Linear
    batches = build_batches(
        _examples(model.config.vocab_size), batch_tokens=64, packing=True, seed=0, epoch=0
    )
    _compare(model, batches)


def test_ddp_wrapped_matches_plain(tiny_model_dir, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        for wrap in (TokenLossModule, lambda m: m):
            model = _lora(_model(tiny_model_dir))
            (b,) = build_batches(
                _examples(model.config.vocab_size), batch_tokens=1000, packing=True, seed=0, epoch=0
            )
            ddp = DDP(wrap(model))
            fast, n = sum_token_loss(ddp, b)
            fast.backward()
            grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
            model.zero_grad()
            ref, n_ref = naive_sum_token_loss(model, b)
            ref.backward()
            assert n == n_ref
            torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
            for g, p in zip(grads, [p for p in model.parameters() if p.requires_grad], strict=True):
                torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()


def test_no_trained_token_gives_zero(tiny_model_dir):
    model = _lora(_model(tiny_model_dir))
    b = build_batches(
        [Tokenized([5, 6, 7, 8], [5, 6, 7, 8], 4)], batch_tokens=100, packing=True, seed=0, epoch=0
    )[0]
    b.labels[:] = -100
    loss, n = sum_token_loss(model, b)
    assert n == 0 and float(loss) == 0.0
    loss.backward()  # still differentiable (DDP needs every rank to run backward)


def test_bf16_full_finetune_matches_naive(tiny_model_dir):
    """The GPU path trains in bf16: the chunked loss keeps fp32 softmax/accumulation and bf16 weight grads."""
    model = _model(tiny_model_dir, dtype=torch.bfloat16)
    (b,) = build_batches(_examples(model.config.vocab_size), batch_tokens=1000, packing=True, seed=0, epoch=0)
    fast, _ = sum_token_loss(model, b)
    fast.backward()
    head = model.get_output_embeddings().weight
    g_fast = head.grad.clone()
    assert g_fast.dtype == torch.bfloat16
    model.zero_grad()
    ref, _ = naive_sum_token_loss(model, b)
    ref.backward()
    torch.testing.assert_close(fast, ref, rtol=2e-2, atol=0.5)
    torch.testing.assert_close(g_fast.float(), head.grad.float(), rtol=5e-2, atol=5e-2)


def test_upper_layers_only_skip_backward_below(tiny_model_dir):
    """LoRA on the upper layer only (all-linear expanded for peft): the lower layer's output needs no grad,
    so autograd keeps no activations there and backward stops above it."""
    from tunesmith.config import validate_config_dict
    from tunesmith.train.adapters import build_trainable

    cfg = validate_config_dict({"model": {"name": str(tiny_model_dir)}, "lora": {"layers_to_transform": [1]}})
    model = build_trainable(cfg)
    adapted = {n.split(".")[4] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"1"}
    seen: dict[int, bool] = {}
    layers = model.get_base_model().model.layers
    for i, layer in enumerate(layers):
        layer.register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(
                i, out[0].requires_grad if isinstance(out, tuple) else out.requires_grad
            )
        )
    (b,) = build_batches(_examples(model.config.vocab_size), batch_tokens=1000, packing=True, seed=0, epoch=0)
    loss, n = sum_token_loss(model, b)
    loss.backward()
    assert seen == {0: False, 1: True}
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
