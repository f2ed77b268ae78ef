"""Preference pairs on tunesmith's own training loop (``method: dpo`` and ``method: reward``).

A pair is one training example for the loop (``PairExample``, a ``Tokenized``): the chosen conversation's
tokens followed by the rejected one's, with ``position_ids`` restarting at 0 where the rejected sequence
starts. Packing (``packing._packed_batch``) puts whole pairs into rows and restarts positions per example,
so a packed row holds the segments ``chosen_0, rejected_0, chosen_1, rejected_1, ...``, each attending only
to itself (transformers reads a position that does not follow its predecessor as a new sequence, see
packing.py). Every loop feature (memory-planned micro-batches, example-sized steps, checkpoints, resume,
early stopping, divergence guard, progress) works on pairs unchanged: the loop only asks the objective for
the loss of a micro-batch and the number of units (pairs) that loss is summed over.

- **Log-probs only at answer positions**: the decoder body runs once per packed row, the hidden states of the
  positions that predict an answer token are gathered, and the head plus log-softmax run over those rows in
  chunks of ``loss._CHUNK_ELEMS`` logits, each chunk recomputed in backward (activation checkpointing), so
  no full-vocabulary logits exist for prompt tokens and at most one chunk of them at a time.
- **Truncation** (``data.max_seq_len``): each side is cut to the limit by dropping prompt tokens from the
  left first (the answer and the turn header before it are kept), then the answer's end; the number of
  pairs cut is reported.
- **Reference log-probs** are the policy's before the first step (a fresh adapter: the base with the adapter
  disabled; an ``init_from`` adapter or full fine-tuning: the initial weights), computed once in a no-grad
  pre-pass and written to the run folder (``reference_logps.json``) so a resume reads them back instead of
  scoring with moved weights. No second copy of the model is kept.
- **DPO losses**: ``dpo_losses`` follows TRL 1.16 ``DPOTrainer._compute_loss`` per ``loss_type`` (with
  TRL's defaults ``label_smoothing=0``, ``discopop_tau=0.05``, reverse KL, no length-desensitisation or WPO
  weighting, which tunesmith does not offer); tests/unit/train/test_pref_engine_loss.py runs TRL's own
  code on the same log-probs. ``aot``, ``aot_unpaired`` and ``sft`` are batch-level in TRL (sorting, a token
  mean); here their batch is the micro-batch, weighted by its pairs (equal to TRL when a step is one
  micro-batch, as at the planned budgets of a few hundred pairs).
- **Reward model**: the scalar head reads the hidden state of each sequence's last token (what
  ``AutoModelForSequenceClassification`` and ``models.scoring.RewardScorer`` read); loss
  ``-logsigmoid(r_chosen - r_rejected)`` (TRL ``RewardTrainer``; no margin, no centering: the config offers
  neither).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX, Tokenized

DISCOPOP_TAU = 0.05  # TRL DPOConfig default
LABEL_SMOOTHING = 0.0  # TRL DPOConfig default; tunesmith does not offer it


@dataclass
class PairExample(Tokenized):
    """chosen ++ rejected as one loop example; ``positions`` restart at 0 at ``split`` (rejected start)."""

    positions: list[int] = field(default_factory=list)
    split: int = 0
    truncated: bool = False  # a side was longer than data.max_seq_len

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(self.input_ids) + (-1, self.split)


def build_pair_examples(
    tokenizer: Any, pairs: list[dict[str, Any]], max_len: int
) -> tuple[list[PairExample], int]:
    """Tokenize preference pairs (canonical ``prompt``/``chosen``/``rejected`` message lists) with the chat
    template; only the final answer's tokens carry labels. Returns the examples and how many pairs had a
    side cut to ``max_len`` (prompt first, see the module docstring)."""
    from tunesmith.data.tokenize import tokenize_chat
    from tunesmith.models.scoring import answer_messages

    out: list[PairExample] = []
    n_cut = 0
    for p in pairs:
        sides = []
        cut = False
        for answer in (p["chosen"], p["rejected"]):
            tok = tokenize_chat(tokenizer, answer_messages(p["prompt"], answer), tools=p.get("tools"))
            ids, labels, was_cut = truncate_prompt_first(tok.input_ids, tok.labels, max_len)
            cut = cut or was_cut
            sides.append((ids, labels))
        (c_ids, c_lab), (r_ids, r_lab) = sides
        n_cut += cut
        out.append(
            PairExample(
                input_ids=c_ids + r_ids,
                labels=c_lab + [IGNORE_INDEX] + r_lab[1:],
                n_tokens_full=len(c_ids) + len(r_ids),
                truncated_answer=cut,
                positions=list(range(len(c_ids))) + list(range(len(r_ids))),
                split=len(c_ids),
                truncated=cut,
            )
        )
    return out, n_cut


def truncate_prompt_first(
    ids: list[int], labels: list[int], max_len: int
) -> tuple[list[int], list[int], bool]:
    """Cut one sequence to ``max_len`` tokens: prompt tokens (before the first labelled one) go from the left
    first, at least one prompt token stays (it predicts the answer's first token), then the end is cut."""
    if len(ids) <= max_len:
        return ids, labels, False
    first = next((i for i, x in enumerate(labels) if x != IGNORE_INDEX), len(ids))
    answer = len(ids) - first
    keep_prompt = max(max_len - answer, min(first, 1))
    start = first - keep_prompt
    ids, labels = ids[start:], labels[start:]
    return ids[:max_len], labels[:max_len], True


# --------------------------------------------------------------------------- per-sequence measures


def segment_ids(position_ids: Any) -> Any:
    """[T] index of the sequence each token of a packed row belongs to (a new one where position is 0)."""
    return (position_ids == 0).long().cumsum(0) - 1


def sequence_logps(model: Any, batch: Any) -> tuple[Any, Any, Any]:
    """Summed answer log-probs of every sequence of a packed single-row ``batch``.

    Returns ``(logps [S], n_answer_tokens [S], token_logps [N])`` with S = 2 x pairs (chosen, rejected
    alternating) and N the answer tokens of the row in order; differentiable when grad is enabled."""
    import torch

    from tunesmith.train.loss import _causal_lm

    batch = _on_device(model, batch)
    lm = _causal_lm(model)
    hidden = lm.get_decoder()(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state[0]
    targets = batch.labels[0, 1:]
    keep = targets != IGNORE_INDEX
    seg = segment_ids(batch.position_ids[0])[1:][keep]
    token_logps = _label_logps(lm.get_output_embeddings(), hidden[:-1][keep], targets[keep])
    n_seq = int(segment_ids(batch.position_ids[0])[-1]) + 1
    sums = torch.zeros(n_seq, dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, seg, token_logps
    )
    counts = torch.bincount(seg, minlength=n_seq)
    return sums, counts, token_logps


def sequence_rewards(model: Any, batch: Any) -> Any:
    """[S] the reward head's scalar at the last token of every sequence of a packed single-row ``batch``."""
    from tunesmith.train.loss import _causal_lm

    batch = _on_device(model, batch)
    cls = _causal_lm(model)  # an AutoModelForSequenceClassification (LoRA layers injected, if any)
    body = getattr(cls, cls.base_model_prefix)
    hidden = body(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state[0]
    pos = batch.position_ids[0]
    starts = (pos == 0).nonzero().squeeze(1)
    ends = list(starts[1:].tolist()) + [pos.numel()]
    last = [e - 1 for e in ends]
    return cls.score(hidden[last]).squeeze(-1).float()


def _label_logps(head: Any, hidden: Any, targets: Any) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    from tunesmith.train.loss import _CHUNK_ELEMS

    if hidden.shape[0] == 0:
        return hidden.sum(-1) * 0.0
    vocab = head.weight.shape[0]
    chunk = max(16, _CHUNK_ELEMS // vocab)
    parts = []
    for s in range(0, hidden.shape[0], chunk):
        h, t = hidden[s : s + chunk], targets[s : s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(checkpoint(_chunk_logps, head, h, t, use_reentrant=False))
        else:
            parts.append(_chunk_logps(head, h, t))
    return torch.cat(parts)


def _chunk_logps(head: Any, h: Any, t: Any) -> Any:
    logits = head(h).float()
    return logits.gather(1, t[:, None]).squeeze(1) - logits.logsumexp(-1)


def _on_device(model: Any, batch: Any) -> Any:
    device = next(model.parameters()).device
    return batch.to(device) if batch.input_ids.device != device else batch


# --------------------------------------------------------------------------- losses


def dpo_losses(
    loss_types: list[str],
    beta: float,
    chosen: Any,
    rejected: Any,
    ref_chosen: Any,
    ref_rejected: Any,
    n_chosen: Any,
    n_rejected: Any,
    chosen_token_logps: Any | None = None,
) -> Any:
    """The DPO loss of a batch of pairs: the mean over pairs of each ``loss_type``'s per-pair loss, summed
    over the types (TRL 1.16 ``DPOTrainer._compute_loss``; the formulas and their papers are cited there).

    ``chosen``/``rejected``: [B] summed answer log-probs under the policy; ``ref_*`` the same under the
    reference; ``n_*``: [B] answer tokens; ``chosen_token_logps``: the chosen answers' token log-probs (all
    pairs, concatenated), needed by ``sft``. Returns a scalar tensor."""
    import torch
    import torch.nn.functional as F

    c_ratio, r_ratio = chosen - ref_chosen, rejected - ref_rejected
    delta = c_ratio - r_ratio
    eps = LABEL_SMOOTHING
    total = chosen.new_zeros(())
    for kind in loss_types:
        if kind in ("sigmoid", "robust") and eps == 0:
            per = -F.logsigmoid(beta * delta)
        elif kind == "robust":
            per = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (
                1 - 2 * eps
            )
        elif kind == "hinge":
            per = torch.relu(1 - beta * delta)
        elif kind == "ipo":
            d = c_ratio / n_chosen.clamp(min=1) - r_ratio / n_rejected.clamp(min=1)
            per = (d - 1 / (2 * beta)) ** 2
        elif kind == "exo_pair":
            e = torch.tensor(eps, device=chosen.device)
            z = beta * delta
            per = torch.sigmoid(z) * (F.logsigmoid(z) - torch.log1p(-e)) + torch.sigmoid(-z) * (
                F.logsigmoid(-z) - torch.log(e)
            )
        elif kind == "nca_pair":
            cr, rr = beta * c_ratio, beta * r_ratio
            per = -F.logsigmoid(cr) - 0.5 * F.logsigmoid(-cr) - 0.5 * F.logsigmoid(-rr)
        elif kind == "bco_pair":
            per = -F.logsigmoid(beta * c_ratio) - F.logsigmoid(-beta * r_ratio)
        elif kind == "sppo_hard":
            per = (c_ratio - 0.5 / beta) ** 2 + (r_ratio + 0.5 / beta) ** 2
        elif kind in ("aot", "aot_unpaired"):
            if kind == "aot":
                d = torch.sort(chosen - rejected)[0] - torch.sort(ref_chosen - ref_rejected)[0]
            else:
                d = torch.sort(c_ratio)[0] - torch.sort(r_ratio)[0]
            per = -F.logsigmoid(beta * d) * (1 - eps) - F.logsigmoid(-beta * d) * eps
        elif kind == "apo_zero":
            per = 1 - torch.sigmoid(beta * c_ratio) + torch.sigmoid(beta * r_ratio)
        elif kind == "apo_down":
            per = torch.sigmoid(beta * c_ratio) + 1 - torch.sigmoid(beta * delta)
        elif kind == "discopop":
            z = beta * delta
            mod = torch.sigmoid(z / DISCOPOP_TAU)
            per = -F.logsigmoid(z) * (1 - mod) + torch.exp(-z) * mod
        elif kind == "sft":
            if chosen_token_logps is None:
                raise ValueError("loss_type sft needs the chosen answers' token log-probs")
            per = (-chosen_token_logps.mean()).expand(chosen.shape[0])
        elif kind == "sigmoid_norm":
            d = c_ratio / n_chosen.clamp(min=1) - r_ratio / n_rejected.clamp(min=1)
            per = -F.logsigmoid(beta * d)
        else:
            raise ValueError(f"unknown DPO loss type {kind!r}")
        total = total + per.mean()
    return total


def reward_loss(r_chosen: Any, r_rejected: Any) -> Any:
    """Mean Bradley-Terry pairwise loss ``-logsigmoid(r_chosen - r_rejected)`` (TRL ``RewardTrainer``)."""
    import torch.nn.functional as F

    return -F.logsigmoid(r_chosen - r_rejected).mean()


# --------------------------------------------------------------------------- objectives for loop.fit


class DpoObjective:
    """What ``loop.fit`` asks of a preference method: the summed loss of a micro-batch and its unit count
    (pairs), and the hold-out loss. ``reference``: pair key -> (ref chosen logp, ref rejected logp)."""

    def __init__(
        self, loss_types: list[str], beta: float, reference: dict[tuple[int, ...], tuple[float, float]]
    ):
        self.loss_types, self.beta, self.reference = loss_types, beta, reference
        self._stats = _Stats()

    def step_metrics(self) -> dict[str, float]:
        """TRL's names for the step's implicit rewards (beta x log-ratio): rewards/chosen, rewards/rejected,
        rewards/margins, rewards/accuracies (means over the step's pairs); resets the tally."""
        return self._stats.pop("rewards/")

    @staticmethod
    def units(batch: Any) -> int:
        return int(batch.n_examples)

    def loss(self, model: Any, batch: Any) -> tuple[Any, int]:
        """(summed per-pair loss of ``batch``, pairs)."""
        import torch

        sums, counts, token_logps = sequence_logps(model, batch)
        keys = pair_keys(batch)
        ref = torch.tensor([self.reference[k] for k in keys], dtype=sums.dtype, device=sums.device)
        chosen_tokens = None
        if "sft" in self.loss_types:
            seg = segment_ids(batch.position_ids[0].to(sums.device))[1:][
                batch.labels[0, 1:].to(sums.device) != IGNORE_INDEX
            ]
            chosen_tokens = token_logps[seg % 2 == 0]
        mean = dpo_losses(
            self.loss_types, self.beta, sums[0::2], sums[1::2], ref[:, 0], ref[:, 1],
            counts[0::2], counts[1::2], chosen_tokens,
        )  # fmt: skip
        if torch.is_grad_enabled():  # training steps only (hold-out scoring runs without grad)
            c, r = sums[0::2].detach() - ref[:, 0], sums[1::2].detach() - ref[:, 1]
            self._stats.add(self.beta * c, self.beta * r)
        return mean * len(keys), len(keys)

    def evaluate(self, model: Any, examples: list[Any], cfg: Any) -> float:
        """Mean DPO loss over the hold-out pairs (no grad, no dropout)."""
        return _mean_loss(self, model, examples, cfg)


class RewardObjective:
    """The reward model's pairwise loss for ``loop.fit`` (units: pairs)."""

    def __init__(self) -> None:
        self._stats = _Stats()

    @staticmethod
    def units(batch: Any) -> int:
        return int(batch.n_examples)

    def step_metrics(self) -> dict[str, float]:
        """TRL RewardTrainer's names: margin and accuracy (means over the step's pairs); resets the tally."""
        return self._stats.pop("")

    def loss(self, model: Any, batch: Any) -> tuple[Any, int]:
        import torch

        r = sequence_rewards(model, batch)
        n = r.shape[0] // 2
        if torch.is_grad_enabled():
            self._stats.add(r[0::2].detach(), r[1::2].detach())
        return reward_loss(r[0::2], r[1::2]) * n, n

    def evaluate(self, model: Any, examples: list[Any], cfg: Any) -> float:
        return _mean_loss(self, model, examples, cfg)


class _Stats:
    """Running sums of the chosen/rejected values of one optimizer step's pairs."""

    def __init__(self) -> None:
        self.n, self.chosen, self.rejected, self.wins = 0, 0.0, 0.0, 0

    def add(self, chosen: Any, rejected: Any) -> None:
        self.n += int(chosen.numel())
        self.chosen += float(chosen.sum())
        self.rejected += float(rejected.sum())
        self.wins += int((chosen > rejected).sum())

    def pop(self, prefix: str) -> dict[str, float]:
        if not self.n:
            return {}
        c, r, n = self.chosen / self.n, self.rejected / self.n, self.n
        out = {
            "margins" if prefix else "margin": c - r,
            "accuracies" if prefix else "accuracy": self.wins / n,
        }
        if prefix:
            out.update(chosen=c, rejected=r)
        self.__init__()
        return {prefix + k: v for k, v in out.items()}


def _eval_mode(model: Any) -> None:
    """``model.eval()``, except bitsandbytes 4-bit layers: in eval mode without grad on a CPU with AVX512-BF16
    they repack their weight for inference (bitsandbytes 0.50 ``Linear4bit.forward``), and the next training
    forward then fails on the repacked shape. Their ``training`` flag changes nothing else (no dropout)."""
    model.eval()
    for m in model.modules():
        if type(m).__name__ == "Linear4bit":
            m.training = True


def pair_keys(batch: Any) -> list[tuple[int, ...]]:
    """The ``PairExample.key`` of each pair of a packed single-row batch, in row order."""
    ids = batch.input_ids[0].tolist()
    starts = (batch.position_ids[0] == 0).nonzero().squeeze(1).tolist() + [len(ids)]
    keys = []
    for k in range(0, len(starts) - 1, 2):
        a, b, c = starts[k], starts[k + 1], starts[k + 2]
        keys.append(tuple(ids[a:c]) + (-1, b - a))
    return keys


def _mean_loss(objective: Any, model: Any, examples: list[Any], cfg: Any) -> float:
    import torch

    from tunesmith.train.adapters import unwrap

    inner = unwrap(model)
    was_training = inner.training
    _eval_mode(inner)
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in _batches(examples, cfg):
            loss, k = objective.loss(inner, batch)
            total, n = total + float(loss), n + k
    if was_training:
        inner.train()
    return total / max(n, 1)


def _batches(examples: list[Any], cfg: Any) -> list[Any]:
    from tunesmith.train.packing import build_batches

    return build_batches(examples, batch_tokens=scoring_tokens(cfg), packing=True, seed=0, epoch=0)


def scoring_tokens(cfg: Any) -> int:
    """Tokens per no-grad scoring batch: a 2x the planned micro-batch is safe (no activations are kept)."""
    bt = cfg.train.batch_tokens
    return max(2 * cfg.data.max_seq_len, 2048 if bt == "auto" else int(bt))


# --------------------------------------------------------------------------- scoring passes


def pair_logps(
    model: Any, examples: list[PairExample], cfg: Any
) -> dict[tuple[int, ...], tuple[float, float]]:
    """(chosen, rejected) summed answer log-probs of every pair under ``model`` (no grad, eval mode)."""
    return _score(model, examples, cfg, lambda m, b: sequence_logps(m, b)[0])


def pair_rewards(
    model: Any, examples: list[PairExample], cfg: Any
) -> dict[tuple[int, ...], tuple[float, float]]:
    """(chosen, rejected) reward-head scores of every pair (no grad, eval mode)."""
    return _score(model, examples, cfg, sequence_rewards)


def _score(
    model: Any, examples: list[PairExample], cfg: Any, fn: Any
) -> dict[tuple[int, ...], tuple[float, float]]:
    import torch

    from tunesmith.train.adapters import unwrap

    inner = unwrap(model)
    was_training = inner.training
    _eval_mode(inner)
    out: dict[tuple[int, ...], tuple[float, float]] = {}
    with torch.no_grad():
        for batch in _batches(examples, cfg):
            values = fn(inner, batch).tolist()
            for i, key in enumerate(pair_keys(batch)):
                out[key] = (values[2 * i], values[2 * i + 1])
    if was_training:
        inner.train()
    missing = [ex for ex in examples if ex.key not in out]  # pairs without an answer token: never trained
    for ex in missing:
        out[ex.key] = (0.0, 0.0)
    return out


def margins(scores: dict[tuple[int, ...], tuple[float, float]], examples: list[PairExample]) -> list[float]:
    """chosen - rejected per example, in ``examples`` order."""
    return [scores[ex.key][0] - scores[ex.key][1] for ex in examples]


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
