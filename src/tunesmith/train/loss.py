"""Summed next-token loss computed only where it is trained, without the full-vocabulary logits.

A causal LM's usual forward computes ``hidden @ lm_head`` for every position: with SmolLM2's 49,152-token
vocabulary that is a [tokens, 49k] fp32 tensor (200 KB per token, kept for backward) and ~20% of the model's
FLOPs, most of it on prompt tokens whose loss is masked out. Here the decoder body runs once, the hidden
states of the positions that carry loss (after the causal shift) are gathered, and the head plus cross-entropy
run over those rows in chunks of ``_CHUNK_ELEMS`` logits. For a plain ``nn.Linear`` head the chunks go
through ``_LinearCrossEntropy``, which computes the gradients of each chunk in the forward pass (softmax minus
one-hot, times the weight) and frees the chunk's logits at once: peak memory is one chunk, and the FLOPs are
those of the normal forward+backward (no recomputation).

``sum_token_loss`` returns ``(loss_sum, n_trained)``: the training loop divides the summed loss of all
micro-batches of an optimizer step by their total ``n_trained`` (token-weighted accumulation: batch 8 x
accumulation 1 equals batch 1 x accumulation 8), i.e. ``(loss_sum / step_tokens).backward()`` per micro-batch.

Wrappers: a PEFT model (LoRA/DoRA/QLoRA injects its layers in place, so the base model's body runs the
adapters), a plain model, or DistributedDataParallel. DDP only synchronises gradients when its own
``forward`` runs, so for the fast path the loop wraps ``TokenLossModule(model)`` in DDP (not the bare model);
a DDP-wrapped bare causal LM still works through ``logits_to_keep`` (correct, less memory-efficient).
Under ``train.distributed: fsdp`` the loop shards ``TokenLossModule(model)`` with FSDP2 (train/distributed.py)
and calls it, so its forward gathers the embeddings and head before the body and head run.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn

from tunesmith.data.tokenize import IGNORE_INDEX

_CHUNK_ELEMS = 1 << 25  # logits per chunk (128 MiB fp32): ~680 rows of a 49k vocabulary


class TokenLossModule(nn.Module):
    """``forward(batch tensors) -> (loss_sum, n_trained)``: the module to wrap in DDP for multi-process runs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: Tensor, labels: Tensor, position_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        loss, n = _token_loss(self.model, input_ids, labels, position_ids, attention_mask)
        return loss, torch.tensor(n)


def sum_token_loss(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
    """Summed cross-entropy over the trained positions of ``batch`` (a ``packing.Batch``) and their count."""
    device = next(model.parameters()).device
    if (
        batch.input_ids.device != device
    ):  # packing builds CPU tensors; on a GPU they move here, once per batch
        batch = batch.to(device)
    args = (batch.input_ids, batch.labels, batch.position_ids, batch.attention_mask)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        if isinstance(model.module, TokenLossModule):
            loss, n = model(*args)
            return loss, int(n)
        return _logits_to_keep_loss(model, *args)
    if isinstance(model, TokenLossModule):
        if _is_fsdp(model):  # FSDP2's root gathers its shards in its own forward
            loss, n = model(*args)
            return loss, int(n)
        return _token_loss(model.model, *args)
    return _token_loss(model, *args)


def naive_sum_token_loss(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
    """The reference: full logits for every position, then the shifted, summed cross-entropy."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()
    targets = batch.labels[:, 1:]
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int((targets != IGNORE_INDEX).sum())


# --------------------------------------------------------------------------- internals


def _is_fsdp(module: nn.Module) -> bool:
    # torch.distributed.fsdp takes ~1 s to import: a module can only be sharded once something imported it
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(module, fsdp.FSDPModule)


def _causal_lm(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)  # peft.PeftModel
    return get_base() if callable(get_base) else model


def _token_loss(
    model: nn.Module, input_ids: Tensor, labels: Tensor, position_ids: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, int]:
    lm = _causal_lm(model)
    config = getattr(lm, "config", None)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    body = lm.get_decoder() if hasattr(lm, "get_decoder") else None
    # Heads that post-process logits (softcapping, logit scales) are not reproduced here: use the model's own
    # forward restricted to the trained positions instead of guessing.
    special = any(
        getattr(config, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale")
    )
    if head is None or body is None or special:
        return _logits_to_keep_loss(model, input_ids, labels, position_ids, attention_mask)
    hidden = body(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    rows = hidden[:, :-1][keep]
    tgt = targets[keep]
    return head_cross_entropy_sum(head, rows, tgt), int(tgt.numel())


def head_cross_entropy_sum(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    """``sum(cross_entropy(head(hidden), targets))`` in chunks; exact, with one chunk of logits alive."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0  # keeps the graph connected (DDP) while contributing nothing
    weight = getattr(head, "weight", None)
    vocab = weight.shape[0] if weight is not None else 1 << 16
    chunk = max(16, _CHUNK_ELEMS // vocab)
    if type(head) is nn.Linear and head.bias is None:
        need_h = torch.is_grad_enabled() and hidden.requires_grad
        need_w = torch.is_grad_enabled() and head.weight.requires_grad
        return _LinearCrossEntropy.apply(hidden, head.weight, targets, chunk, need_h, need_w)
    # An adapter-wrapped or biased head: recompute each chunk's logits in backward (checkpointing) rather
    # than keeping them all.
    from torch.utils.checkpoint import checkpoint

    total = hidden.new_zeros(())
    for s in range(0, hidden.shape[0], chunk):
        total = total + checkpoint(
            _chunk_ce, head, hidden[s : s + chunk], targets[s : s + chunk], use_reentrant=False
        )
    return total


def _chunk_ce(head: nn.Module, h: Tensor, t: Tensor) -> Tensor:
    return nn.functional.cross_entropy(head(h).float(), t, reduction="sum")


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed CE of ``hidden @ weight.T``; gradients are produced chunk by chunk during the forward."""

    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int, need_h: bool, need_w: bool
    ) -> Tensor:  # type: ignore[override]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk]
            t = targets[s : s + chunk]
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax in place: the logits are not needed again
                probs[torch.arange(t.numel(), device=t.device), t] -= 1.0
                probs = probs.to(weight.dtype)
                if grad_h is not None:
                    grad_h[s : s + chunk] = probs @ weight
                if grad_w is not None:
                    grad_w.addmm_(probs.t().float(), h.float())
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
        ctx.has = (grad_h is not None, grad_w is not None)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        gh = saved.pop(0) * grad_out if ctx.has[0] else None
        gw = saved.pop(0) * grad_out if ctx.has[1] else None
        if gw is not None:
            gw = gw.to(ctx.weight_dtype)  # accumulated in fp32, returned in the weight's dtype (bf16 on GPU)
        return gh, gw, None, None, None, None


def _logits_to_keep_loss(
    model: nn.Module, input_ids: Tensor, labels: Tensor, position_ids: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, int]:
    # The model's own forward with the head applied only at the positions that predict a trained token.
    # logits_to_keep takes 1-D sequence indices, so it is exact for single-row (packed) batches; padded
    # multi-row batches keep the union of positions and mask the rest.
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    cols = keep.any(dim=0).nonzero().squeeze(1)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        logits_to_keep=cols,
    )
    logits = out.logits.float()  # [rows, len(cols), V]
    tg = targets[:, cols]
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tg.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int(keep.sum())
