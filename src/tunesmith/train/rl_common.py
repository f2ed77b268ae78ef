"""What the reinforcement methods (``ppo``, ``rloo``, ``grpo``) share: prompts, the reward, the probe.

    prompts -> load_prompt_rows(prompts_path(cfg))   train.prompts, else the prompts of data.train
    probe   -> split_probe: a few prompts kept aside, answered greedily before and after training
    reward  -> load_reward(cfg): a trained reward model (train.reward_model, a ``method: reward`` run) or a
               grader file (train.grader, OpenAI's grader JSON; tunesmith.graders), one number per answer

A reward sees the prompt's messages, the sampled answer's text and the prompt's JSONL row (``item``: a grader
reads reference fields from it, e.g. ``{{item.answer}}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.formats import Issue, Record, _as_messages, _norm_message, iter_raw_rows
from tunesmith.errors import TunesmithError
from tunesmith.results.run import ProbeGeneration

N_PROBE_PROMPTS = 4  # hold-out prompts answered greedily before/after (kept small: generation is slow on CPU)
Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class PromptRow:
    """One prompt: its chat messages (ending in a user or tool turn) and its JSONL row (``item``)."""

    messages: Messages
    item: dict[str, Any]


# --------------------------------------------------------------------------- prompts


def prompts_path(cfg: ProjectConfig) -> Path:
    path = cfg.train.prompts or cfg.data.train
    if path is None:
        raise TunesmithError(
            f"method: {cfg.train.method} needs prompts: set train.prompts (or data.train).",
            'A JSONL file with one {"prompt": "..."} or {"messages": [...]} per line.',
        )
    return Path(path)


def load_prompt_rows(path: Path) -> list[PromptRow]:
    """Prompts as chat messages ending in a user (or tool) turn. Each line is ``{"prompt": str | messages}``,
    ``{"messages": [...]}`` (a trailing assistant answer is dropped: its conversation is the prompt) or a
    preference pair (its prompt); the other fields of the line are kept as the grader's ``item``.

    Raises:
        TunesmithError: naming every bad line (none is skipped silently), or for fewer than 2 prompts.
    """
    rows: list[Record] = []
    errors: list[Issue] = []
    for line, obj in iter_raw_rows(Path(path)):
        if isinstance(obj, Issue):
            errors.append(obj)
            continue
        try:
            rows.append(Record(line, {"messages": _prompt_messages(obj), "item": obj}))
        except ValueError as exc:
            errors.append(
                Issue(
                    line,
                    "bad_prompt",
                    f"Line {line}: {exc}",
                    'Use {"prompt": "..."} or {"messages": [...]} ending with the user turn.',
                )
            )
    if errors:
        shown = "\n".join(f"  line {e.line}: {e.message}" for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise TunesmithError(f"{path} has {len(errors)} bad prompt line(s):\n{shown}{more}", errors[0].hint)
    if len(rows) < 2:
        raise TunesmithError(
            f"{path} holds {len(rows)} prompt(s).",
            "Give at least 2 prompts (one is kept aside to compare before/after).",
        )
    return [PromptRow(r.data["messages"], r.data["item"]) for r in rows]


def load_prompts(path: Path) -> list[Messages]:
    """``load_prompt_rows`` without the rows: the chat messages of each prompt."""
    return [r.messages for r in load_prompt_rows(path)]


def _prompt_messages(obj: Any) -> Messages:
    from tunesmith.data.formats import RowError

    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}.")
    try:
        if "messages" in obj and isinstance(obj["messages"], list) and obj["messages"]:
            msgs = [_norm_message(m, i) for i, m in enumerate(obj["messages"])]
            while msgs and msgs[-1]["role"] == "assistant":
                msgs = msgs[:-1]
        elif "prompt" in obj:
            msgs = _as_messages(obj["prompt"], "user", "prompt")
        else:
            raise ValueError(
                f"no 'prompt' or 'messages' field (fields: {', '.join(list(obj)[:6]) or 'none'})."
            )
    except RowError as exc:
        raise ValueError(exc.message) from None
    if not msgs or msgs[-1]["role"] not in ("user", "tool"):
        raise ValueError("the prompt must end with a user (or tool) turn.")
    return msgs


def split_probe(prompts: list[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """A few prompts (about ``min(N_PROBE_PROMPTS, n // 5)``, at least one) kept aside for the before/after
    comparison, with ``data split``'s splitter: a near-copy of a probe prompt never trains. ``prompts`` are
    message lists or ``PromptRow``s; the two lists keep that type."""
    from tunesmith.data.formats import LoadedData
    from tunesmith.data.split import holdout_split

    if len(prompts) < 2:
        return prompts[1:], prompts[:1]
    msgs = [p.messages if isinstance(p, PromptRow) else p for p in prompts]
    texts = ["\n".join(f"{m['role']}: {m.get('content') or ''}" for m in p) for p in msgs]
    data = LoadedData(Path("prompts"), "text", [Record(i + 1, {"text": t}) for i, t in enumerate(texts)])
    n = min(N_PROBE_PROMPTS, max(1, len(prompts) // 5))
    train_idx, probe_idx = holdout_split(data, n / len(prompts), seed, at_least_one=True)
    if not probe_idx:  # every prompt a near-copy of the others: one of them still serves as the probe
        probe_idx = [train_idx.pop(0)]
    return [prompts[i] for i in train_idx], [prompts[i] for i in probe_idx]


# --------------------------------------------------------------------------- reward

RewardFn = Callable[[list[Messages], list[str], list[dict[str, Any]]], list[float]]


@dataclass(frozen=True)
class Reward:
    """The reward of a run: ``score(prompts, answers, items) -> one float per answer`` and what it is."""

    score: RewardFn
    source: str  # "reward_model: runs/rm" or "grader: grader.json"


def reward_run(cfg: ProjectConfig) -> Path:
    path = cfg.train.reward_model
    if path is None or not Path(path).exists():
        raise TunesmithError(
            f"train.reward_model {path} does not exist.",
            "Train a reward model first (method: reward) and set train.reward_model to its run folder.",
        )
    return Path(path)


def load_reward(cfg: ProjectConfig) -> Reward:
    """The run's reward: ``train.grader`` (a grader JSON file) or ``train.reward_model`` (a reward run).

    Raises:
        TunesmithError: for a missing reward run or grader file, or a grader the graders package refuses.
    """
    if cfg.train.grader is not None:
        return grader_reward(cfg.train.grader)
    from tunesmith.models.scoring import load_reward_scorer

    scorer = load_reward_scorer(reward_run(cfg), max_len=cfg.data.max_seq_len)

    def score(prompts: list[Messages], answers: list[str], items: list[dict[str, Any]]) -> list[float]:
        convs = [p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, answers, strict=True)]
        return scorer.score(convs)

    return Reward(score, f"reward_model: {cfg.train.reward_model}")


def grader_reward(spec: Path | dict[str, Any]) -> Reward:
    """A reward from a grader (a JSON file or its parsed dict): each answer is graded as OpenAI's
    reinforcement fine-tuning does, ``sample.output_text`` the answer and ``item`` the prompt's row."""
    from tunesmith.graders import load_grader

    if isinstance(spec, Path) and not spec.exists():
        raise TunesmithError(f"train.grader {spec} does not exist.", "Point it at a grader JSON file.")
    grader = load_grader(spec)

    def score(prompts: list[Messages], answers: list[str], items: list[dict[str, Any]]) -> list[float]:
        return [float(x) for x in grader.grade_batch([{"output_text": a} for a in answers], items)]

    return Reward(score, f"grader: {spec if isinstance(spec, Path) else spec.get('name', 'inline')}")


def trl_reward_function(reward: Reward) -> Any:
    """The reward as a TRL reward function: TRL passes the prompts, the completions and the dataset's other
    columns (here ``item``, the prompt's row as JSON) as keywords."""

    def reward_score(prompts: list[Any], completions: list[Any], **kw: Any) -> list[float]:
        items = [json.loads(x) for x in kw.get("item") or ["{}"] * len(prompts)]
        msgs = [_as_conv(p, "user") for p in prompts]
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return reward.score(msgs, texts, items)

    return reward_score


def trl_dataset(rows: list[PromptRow]) -> Any:
    """A ``datasets.Dataset`` of ``prompt`` (messages) and ``item`` (the row as JSON) for TRL's trainers."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r.messages, "item": json.dumps(r.item)} for r in rows])


def _as_conv(x: Any, role: str) -> Messages:
    return (
        [{"role": m["role"], "content": m["content"]} for m in x]
        if isinstance(x, list)
        else [{"role": role, "content": str(x)}]
    )


# --------------------------------------------------------------------------- probe


def answer_and_score(
    model: Any, tokenizer: Any, reward: Reward, probe: list[PromptRow], max_tokens: int
) -> list[dict[str, Any]]:
    """Greedy answers to the ``probe`` prompts and their rewards."""
    from tunesmith.models.generate import GenerationSettings, generate

    was_training = model.training
    model.eval()
    try:
        gens = generate(
            model, tokenizer, [p.messages for p in probe], GenerationSettings(max_tokens=max_tokens)
        )
    finally:
        if was_training:
            model.train()
    scores = reward.score([p.messages for p in probe], [g.text for g in gens], [p.item for p in probe])
    return [
        {"prompt": p.messages[-1]["content"], "answer": g.text, "reward": s}
        for p, g, s in zip(probe, gens, scores, strict=True)
    ]


def probe_fields(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe's part of the RL extras: mean reward before and after, and each prompt's two answers."""
    return {
        "probe_reward_before": sum(r["reward"] for r in before) / len(before),
        "probe_reward_after": sum(r["reward"] for r in after) / len(after),
        "probe_generations": [
            ProbeGeneration(
                prompt=b["prompt"], before=b["answer"], reward_before=b["reward"],
                after=a["answer"], reward_after=a["reward"],
            )
            for b, a in zip(before, after, strict=True)
        ],
    }  # fmt: skip
