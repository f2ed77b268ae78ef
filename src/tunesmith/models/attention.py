"""Packed-row attention without a block mask: ``sdpa_packed``.

A packed row holds several examples; ``position_ids`` restart at 0 where each begins. With ``sdpa``,
transformers turns that into a [rows, 1, T, T] block-diagonal causal mask, and a masked ``scaled_dot_product_
attention`` computes (and differentiates) every one of the T x T scores, most of them across examples and
thrown away. ``sdpa_packed`` instead cuts each row at its example boundaries and calls ``scaled_dot_product_
attention(is_causal=True)`` once per example: the same result (each token sees exactly the earlier tokens of
its own example), the cost of attention summed over examples instead of over the row, and no mask to build.
On CPU the unmasked causal call also takes PyTorch's fused flash kernel; on a GPU, its flash/efficient ones.

It is registered with transformers' attention and mask interfaces under the name ``sdpa_packed``:
- the mask function returns no mask when nothing is padded (packed rows, or a single example) and defers to
  transformers' own ``sdpa_mask`` when a 2-D padding mask is given;
- the attention function splits by ``position_ids`` when it gets no mask, and runs transformers' ``sdpa``
  unchanged when it gets one (padded batches), when query and key lengths differ (decoding with a cache), or
  for a model with a sliding window (``supports`` keeps those on plain ``sdpa``).
Measured in bench/levers.py (bench/README.md, lever table); equality with ``sdpa`` is tested on losses and
gradients in tests/unit/train/test_attention_packed.py.
"""

from __future__ import annotations

from typing import Any

NAME = "sdpa_packed"
_registered = False


def register() -> None:
    """Make ``attn_implementation="sdpa_packed"`` known to transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_sdpa_attention)
    AttentionMaskInterface.register(NAME, _packed_mask)
    _registered = True


def supports(config: Any) -> bool:
    """Whether a model's attention is plain causal attention that ``sdpa_packed`` reproduces exactly."""
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False  # a window would have to be applied inside each example
    if getattr(config, "attn_logit_softcapping", None) is not None:
        return False
    return not getattr(config, "is_encoder_decoder", False)


def _packed_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    padded = attention_mask is not None and not bool(attention_mask.all())
    if padded or kwargs.get("q_length") != kwargs.get("kv_length"):  # padding, or decoding with a cache
        return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)
    return None


def packed_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """``query``: [B, H, T, D], ``key``/``value``: [B, KV, T, D]. Returns [B, T, H, D] like transformers' sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = {"enable_gqa": True} if query.shape[1] != key.shape[1] else {}
    drop = dropout if module.training else 0.0

    def attend(q: Any, k: Any, v: Any) -> Any:
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=drop, is_causal=True, scale=scaling, **gqa
        )

    spans = _segments(position_ids, query.shape[0], query.shape[2])
    if spans is None:  # one example per row: one call for the whole batch
        out = attend(query, key, value)
    else:
        rows = []
        for row, starts in enumerate(spans):
            q, k, v = query[row : row + 1], key[row : row + 1], value[row : row + 1]
            ends = [*starts[1:], query.shape[2]]
            parts = [
                attend(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]) for s, e in zip(starts, ends, strict=True)
            ]
            rows.append(torch.cat(parts, dim=2))
        out = torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _segments(position_ids: Any, rows: int, length: int) -> list[list[int]] | None:
    """Start offsets of the examples in each row (where ``position_ids`` is 0), or None when every row is
    one example starting at 0 (no split needed)."""
    if position_ids is None:
        return None
    pos = position_ids.expand(rows, length) if position_ids.shape[0] == 1 else position_ids
    starts = (pos == 0).nonzero().tolist()
    per_row: list[list[int]] = [[] for _ in range(rows)]
    for r, t in starts:
        per_row[r].append(t)
    if all(s == [0] for s in per_row):
        return None
    return [s if s and s[0] == 0 else [0, *s] for s in per_row]
