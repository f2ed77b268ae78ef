"""Shared generation: the one path that eval, ``tunesmith chat``, RAG answers and the server use.

For the same model, prompt and greedy settings every caller gets the same answer, because they all build
the prompt the same way (``tunesmith.data.tokenize.prompt_ids``: the model's own chat template with the
generation prompt) and decode with the same settings.

Design choices:

- **Wrap ``model.generate``** (transformers) with left padding and the KV cache on; we do not write a decode
  loop. Prompts are sorted by length before batching so that a batch holds similar lengths (less padding);
  results come back in the caller's order.
- **Greedy by default** (``temperature=0``). ``temperature > 0`` samples with ``top_p``; ``seed`` seeds the
  sampler (a dedicated ``torch`` seed for this call) so sampled runs are repeatable.
- **Stop tokens**: the tokenizer's EOS, the generation config's EOS ids and the chat template's end-of-turn
  token (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>`` when in the vocabulary). ``stop`` strings are
  passed to transformers' ``stop_strings`` (halts the batch row early) and the text is cut at the first
  stop string.
- **Latency** per output is the wall time of the batch it was generated in (what a caller waiting on
  that batch experiences); ``completion_tokens`` counts the tokens up to and including the stop token.
- **Label scoring** (``score_labels``): the log-likelihood of each candidate label *as the whole assistant
  answer* (label tokens plus the end-of-turn token, so a label that is a prefix of another is not
  favoured), summed over tokens, for every (prompt, label) pair: one forward pass over a batch of prompts,
  then one over all their label continuations on the prompts' KV cache (no decoding, no recomputed prompt).
  The predicted label is the argmax. It is the fairest way to score a prompted model on classification: it
  cannot answer outside the label set or with extra words.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.tokenize import prompt_ids, render
from tunesmith.errors import TunesmithError

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. ``temperature == 0`` is greedy (deterministic)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise TunesmithError(f"max_tokens is {self.max_tokens}.", "Give max_tokens >= 1.")
        if self.temperature < 0:
            raise TunesmithError(
                f"temperature is {self.temperature}.", "Use 0 (greedy) or a positive temperature."
            )
        if not 0 < self.top_p <= 1:
            raise TunesmithError(f"top_p is {self.top_p}.", "Use 0 < top_p <= 1.")


@dataclass(frozen=True)
class Generation:
    """One generated answer with its token counts and latency."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str  # "stop" (end-of-turn / stop string) or "length"

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.latency_s if self.latency_s > 0 else 0.0


@dataclass(frozen=True)
class LabelScores:
    """Log-likelihood of every candidate label for every prompt."""

    labels: list[str]
    logprobs: list[list[float]]  # [n_prompts][n_labels], summed over the label + end-of-turn tokens
    latency_s: float
    prompt_tokens: list[int] = field(default_factory=list)

    @property
    def predictions(self) -> list[str]:
        return [self.labels[max(range(len(row)), key=row.__getitem__)] for row in self.logprobs]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS and end-of-turn token ids for this model + tokenizer."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for x in [tokenizer.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])]:
        if isinstance(x, int) and x not in ids:
            ids.append(x)
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        tid = vocab.get(tok)
        if tid is not None and tid not in ids:
            ids.append(tid)
    return ids


def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, Any]]],
    settings: GenerationSettings | None = None,
    *,
    batch_size: int = 8,
    tools: Any = None,
    tools_per_conversation: Sequence[Any] | None = None,
) -> list[Generation]:
    """Answer each conversation (its last turn is the user's); batched, left-padded, KV-cached.

    ``tools``: one tool list rendered into every prompt; ``tools_per_conversation``: one tool list (or
    None) per conversation instead (e.g. each hold-out row's own ``tools``)."""
    each = _tools_each(conversations, tools, tools_per_conversation)
    prompts = [
        prompt_ids(tokenizer, list(msgs), tools=t) for msgs, t in zip(conversations, each, strict=True)
    ]
    return generate_from_ids(model, tokenizer, prompts, settings, batch_size=batch_size)


def _tools_each(conversations: Sequence[Any], shared: Any, each: Sequence[Any] | None) -> list[Any]:
    if each is None:
        return [shared] * len(conversations)
    if len(each) != len(conversations):
        raise TunesmithError(
            f"{len(each)} tool lists for {len(conversations)} conversations.",
            "Give one tool list (or None) per conversation.",
        )
    return list(each)


def generate_from_ids(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    settings: GenerationSettings | None = None,
    *,
    batch_size: int = 8,
) -> list[Generation]:
    """``generate`` for already-templated prompt token ids."""
    settings = settings or GenerationSettings()
    if batch_size < 1:
        raise TunesmithError(f"batch_size is {batch_size}.", "Use batch_size >= 1.")
    if any(len(p) == 0 for p in prompts):
        raise TunesmithError(
            "An empty prompt was given to generate.", "Every prompt needs at least one token."
        )
    from tunesmith.progress import step

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Generation | None] = [None] * len(prompts)
    with step("generating answers", len(prompts)) as progress:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for i, gen in zip(
                idx, _generate_batch(model, tokenizer, [prompts[i] for i in idx], settings), strict=True
            ):
                out[i] = gen
            progress.advance(len(idx))
    return [g for g in out if g is not None]


def _generate_batch(
    model: Any, tokenizer: Any, prompts: list[list[int]], s: GenerationSettings
) -> list[Generation]:
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):  # left padding: every prompt ends at the last column
        input_ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[row, width - len(p) :] = 1
    stops = stop_token_ids(model, tokenizer)
    kwargs: dict[str, Any] = dict(
        max_new_tokens=s.max_tokens,
        eos_token_id=stops,
        pad_token_id=pad_id,
        use_cache=True,
        do_sample=s.temperature > 0,
    )
    if s.temperature > 0:
        kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
    else:  # explicit, so a model's generation_config cannot turn sampling on behind our back
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if s.stop:
        kwargs.update(stop_strings=list(s.stop), tokenizer=tokenizer)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if s.seed is not None:
            torch.manual_seed(s.seed)
        seqs = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
    latency = time.perf_counter() - t0
    results = []
    for row, p in enumerate(prompts):
        new = seqs[row, width:].tolist()
        n_completion, finish = len(new), "length"
        for j, t in enumerate(new):
            if t in stops:
                n_completion, finish = j + 1, "stop"
                new = new[:j]
                break
        text = tokenizer.decode(new, skip_special_tokens=True)
        text, cut = _cut_at_stop(text, s.stop)
        if cut:
            finish = "stop"
        results.append(Generation(text.strip(), len(p), n_completion, latency, finish))
    return results


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(x) for x in stop if x and x in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


# --------------------------------------------------------------------------- label scoring


def score_labels(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, Any]]],
    labels: Sequence[str],
    *,
    batch_size: int = 8,
    tools_per_conversation: Sequence[Any] | None = None,
) -> LabelScores:
    """Log-likelihood of each label as the assistant's whole answer, for every conversation.

    Two forward passes per batch of prompts: the prompts once (left-padded, KV cache kept), then every
    label continuation of every prompt on a copy of its prompt's cache, so a prompt is never recomputed
    per label (few-shot prompts are long; labels are a few tokens)."""
    labels = list(dict.fromkeys(labels))
    if not labels:
        raise TunesmithError("No candidate labels to score.", "Classification data needs at least one label.")
    t0 = time.perf_counter()
    prompts, conts = [], []
    for msgs, tools in zip(
        conversations, _tools_each(conversations, None, tools_per_conversation), strict=True
    ):
        p_ids, c_ids = _label_continuations(tokenizer, list(msgs), labels, tools)
        prompts.append(p_ids)
        conts.append(c_ids)
    from tunesmith.progress import step

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    matrix: list[list[float]] = [[] for _ in prompts]
    with step("scoring labels", len(prompts)) as progress:
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            rows = _score_batch(model, tokenizer, [prompts[i] for i in idx], [conts[i] for i in idx])
            for i, row in zip(idx, rows, strict=True):
                matrix[i] = row
            progress.advance(len(idx))
    if any(not math.isfinite(x) for row in matrix for x in row):
        raise TunesmithError(
            "Label scoring produced a non-finite log-likelihood.", "Check the model weights (NaN/inf)."
        )
    return LabelScores(labels, matrix, time.perf_counter() - t0, [len(p) for p in prompts])


def _score_batch(
    model: Any, tokenizer: Any, prompts: list[list[int]], conts: list[list[list[int]]]
) -> list[list[float]]:
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_l = len(conts[0])
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):  # left padding: every prompt's last token is in the last column
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    c_width = max(len(c) for cs in conts for c in cs)
    c_ids = torch.full((len(prompts) * n_l, c_width), pad_id, dtype=torch.long)
    c_mask = torch.zeros((len(prompts) * n_l, c_width), dtype=torch.long)
    for r, cs in enumerate(conts):
        for j, c in enumerate(cs):  # right padding after the prompt: positions continue from the prompt
            c_ids[r * n_l + j, : len(c)] = torch.tensor(c)
            c_mask[r * n_l + j, : len(c)] = 1
    lengths = torch.tensor([len(p) for p in prompts]).repeat_interleave(n_l)
    c_pos = lengths[:, None] + torch.arange(c_width)[None, :]
    with torch.inference_mode():
        first = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=pos.to(device),
            use_cache=True,
        )
        cache = first.cache  # transformers 5 names it `cache` (was past_key_values)
        cache.batch_repeat_interleave(n_l)
        full_mask = torch.cat([mask.repeat_interleave(n_l, dim=0), c_mask], dim=1)
        second = model(
            input_ids=c_ids.to(device),
            attention_mask=full_mask.to(device),
            position_ids=c_pos.to(device),
            cache=cache,
            use_cache=True,
        )
    # the logits that predict continuation token t: the prompt's last position for t = 0, else position t - 1
    logits = torch.cat(
        [first.logits[:, -1:].float().repeat_interleave(n_l, dim=0), second.logits[:, :-1].float()], dim=1
    )
    tok_lp = torch.log_softmax(logits, dim=-1).gather(-1, c_ids.to(device).unsqueeze(-1)).squeeze(-1)
    sums = (tok_lp * c_mask.to(device)).sum(-1).tolist()
    return [sums[r * n_l : (r + 1) * n_l] for r in range(len(prompts))]


def _label_continuations(
    tokenizer: Any, messages: list[dict[str, Any]], labels: list[str], tools: Any = None
) -> tuple[list[int], list[list[int]]]:
    """Prompt ids and, per label, the ids the template writes for that assistant answer (label + end-of-turn)."""
    prefix = render(tokenizer, messages, add_generation_prompt=True, tools=tools)
    p_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    conts = []
    for label in labels:
        full = render(tokenizer, [*messages, {"role": "assistant", "content": label}], tools=tools)
        if not full.startswith(prefix):
            raise TunesmithError(
                "The chat template does not render the answer after the generation prompt, so labels cannot be scored.",
                "Use a model with a standard chat template, or score by generation.",
            )
        cont = full[len(prefix) :].rstrip("\n")
        conts.append(tokenizer(cont, add_special_tokens=False)["input_ids"])
    return p_ids, conts
