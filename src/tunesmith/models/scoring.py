"""Scoring with a trained model, shared by the training methods and by evaluation (no method code here).

- ``pair_logps`` / ``answer_logps``: summed log-probability of a conversation's final assistant message
  (its end-of-turn token included), with the chat template and masks of ``tunesmith.data.tokenize``;
  earlier assistant turns of a multi-turn prompt carry no score. DPO's hold-out check, ``tunesmith eval``
  on preference data and the preference tests all read the same numbers.
- ``RewardScorer`` / ``load_reward_scorer``: a reward model (``method: reward`` run) scores a conversation
  rendered exactly as reward training rendered it, so ``tunesmith score``, the PPO reward and evaluation
  agree.
- ``preference_accuracy``: share of pairs whose chosen answer wins; a tie counts as a miss.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX, render, tokenize_chat
from tunesmith.errors import TunesmithError


def answer_messages(prompt: list[dict[str, Any]], answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with only the final answer carrying loss (earlier assistant turns weight 0)."""
    head = [dict(m, weight=0) if m["role"] == "assistant" else dict(m) for m in prompt]
    return head + [{k: v for k, v in m.items() if k != "weight"} for m in answer]


def answer_logps(
    model: Any,
    tokenizer: Any,
    convs: list[list[dict[str, Any]]],
    *,
    max_len: int = 1024,
    batch_size: int = 8,
    tools_per_conversation: list[Any] | None = None,
) -> list[float]:
    """Summed log-probability of each conversation's final assistant message under ``model`` (no grad);
    ``tools_per_conversation``: each conversation's tool list (or None), rendered as training renders it."""
    import torch

    each = tools_per_conversation or [None] * len(convs)
    toks = [tokenize_chat(tokenizer, c, max_len=max_len, tools=t) for c, t in zip(convs, each, strict=True)]
    out: list[float] = [0.0] * len(toks)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(toks)), key=lambda i: len(toks[i].input_ids))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(toks[i].input_ids) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(toks[i].input_ids)
                ids[row, :n] = torch.tensor(toks[i].input_ids)
                labels[row, :n] = torch.tensor(toks[i].labels)
                mask[row, :n] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tgt = labels[:, 1:].to(device)
            keep = tgt != IGNORE_INDEX
            picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep
            for row, i in enumerate(idx):
                out[i] = float(picked[row].sum())
    if was_training:
        model.train()
    return out


def pair_logps(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]], *, max_len: int = 1024
) -> list[tuple[float, float]]:
    """``(logp chosen, logp rejected)`` per pair."""
    convs = [answer_messages(p["prompt"], p["chosen"]) for p in pairs]
    convs += [answer_messages(p["prompt"], p["rejected"]) for p in pairs]
    tools = [p.get("tools") for p in pairs] * 2
    lp = answer_logps(model, tokenizer, convs, max_len=max_len, tools_per_conversation=tools)
    n = len(pairs)
    return list(zip(lp[:n], lp[n:], strict=True))


def preference_accuracy(margins: list[float]) -> float:
    """Share of pairs whose chosen answer beats the rejected one (a tie counts as a miss)."""
    return sum(1 for m in margins if m > 0) / len(margins) if margins else math.nan


@dataclass
class RewardScorer:
    """Scores conversations with a reward model (a scalar per conversation, higher = preferred)."""

    model: Any
    tokenizer: Any
    max_len: int = 1024
    batch_size: int = 8

    def score(self, convs: list[list[dict[str, Any]]]) -> list[float]:
        import torch

        texts = [render(self.tokenizer, c) for c in convs]
        out: list[float] = []
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            with torch.no_grad():
                for i in range(0, len(texts), self.batch_size):
                    enc = self.tokenizer(
                        texts[i : i + self.batch_size], add_special_tokens=False, padding=True,
                        truncation=True, max_length=self.max_len, return_tensors="pt",
                    )  # fmt: skip
                    logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits
                    out += [float(x) for x in logits[:, 0].float()]
        finally:
            self.tokenizer.padding_side = old_side
            if was_training:
                self.model.train()
        return out

    def pair_scores(self, pairs: list[dict[str, Any]]) -> list[tuple[float, float]]:
        """``(score chosen, score rejected)`` per preference pair."""
        chosen = self.score([list(p["prompt"]) + list(p["chosen"]) for p in pairs])
        rejected = self.score([list(p["prompt"]) + list(p["rejected"]) for p in pairs])
        return list(zip(chosen, rejected, strict=True))


def load_reward_scorer(run_dir: Path, *, max_len: int = 1024) -> RewardScorer:
    """A ``RewardScorer`` for a finished ``method: reward`` run (adapter + head, or a full model)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tunesmith.models.inference import locate_run_weights, run_base_model
    from tunesmith.models.load import load_tokenizer, resolve_model_dir
    from tunesmith.results.run import read_run_summary

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise TunesmithError(
            f"Reward run {run_dir} does not exist.", "Pass the folder of a finished `method: reward` run."
        )
    summary = run_dir / "summary.json"
    method = read_run_summary(summary).method if summary.exists() else None
    if method is not None and method != "reward":
        raise TunesmithError(
            f"{run_dir} is a method: {method} run, not a reward model.",
            "Train one with method: reward and pass its run folder.",
        )
    kind, folder = locate_run_weights(run_dir)
    tokenizer = load_tokenizer(str(folder))
    if kind == "model":
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    else:
        from peft import PeftModel

        base = run_base_model(run_dir)
        if base is None:
            raise TunesmithError(
                f"Cannot tell which base model {run_dir} was trained on.", "Its summary.json is missing."
            )
        with quiet_load_report():  # the head is missing from the base; the adapter restores the trained one
            head = AutoModelForSequenceClassification.from_pretrained(
                str(resolve_model_dir(base)), num_labels=1, dtype=torch.float32
            )
        head.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(head, str(folder))
    if getattr(model.config, "num_labels", 1) != 1:
        raise TunesmithError(
            f"{run_dir} is not a reward model (it has {model.config.num_labels} outputs).",
            "Pass a method: reward run.",
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return RewardScorer(model, tokenizer, max_len)


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """transformers logs a load report naming the newly created ``score`` head as MISSING; for a reward model
    that is expected, and the report would read like an error to users of ``tunesmith score``."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
