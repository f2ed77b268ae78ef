"""Evaluation of preference runs (dpo, ppo, reward; an sft run works too) on held-out preference pairs.

``evaluate(...)`` returns (and writes as ``report.json``) a report with two candidates, ``base`` and
``finetuned``, each with:

- ``preference_accuracy``: share of pairs the candidate prefers correctly. For a policy (dpo/ppo/sft) the
  summed log-probability of the chosen answer beats the rejected one's (a tie is a miss). For a reward run
  the finetuned candidate is the reward model (its score of chosen beats rejected) and the base is the base
  LM judged by log-probability, the zero-training judge a reward model has to beat.
- ``reward_margin``: for a policy, DPO's implicit reward margin with the base as reference,
  ``beta * mean[(logp_c - logp_r)_policy - (logp_c - logp_r)_base]`` (so it is 0 for the base by definition;
  beta from the run's config); for a reward run, the reward model's mean score(chosen) - score(rejected)
  (None for the base, which has no reward head).
- ``logp_margin``: the mean log-probability margin itself (policies only).
- with a reward model (a ppo run's ``train.reward_model``, or ``reward_model=``): ``generated_reward``, the
  reward model's mean score of greedy answers to the pair prompts, so a ppo run shows its reward before
  (base) vs after (finetuned).

``generations`` holds a few prompts with the base and finetuned greedy answers side by side (with the
reference chosen answer and, when a reward model is present, each answer's score).

Base and finetuned share one copy of the weights when the run is an adapter (the base is the same model with
the adapter disabled).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from tunesmith.data.formats import load_records_or_raise
from tunesmith.errors import TunesmithError
from tunesmith.models.scoring import pair_logps, preference_accuracy


def evaluate(
    *,
    model: str | None,
    adapter: Path,
    data: Path,
    out: Path | None = None,
    max_examples: int | None = None,
    n_generations: int = 3,
    max_new_tokens: int = 64,
    reward_model: Path | None = None,
) -> dict[str, Any]:
    """Score ``adapter`` (a run folder) and its base on the preference pairs in ``data``; see the module doc."""
    started = time.time()
    pairs = load_records_or_raise(Path(data), "preference").rows[: max_examples or None]
    info = _run_info(Path(adapter))
    if info["method"] == "reward":
        report = _evaluate_reward_run(model, Path(adapter), pairs, info)
    else:
        rm = reward_model or info.get("reward_model")
        report = _evaluate_policy_run(model, Path(adapter), pairs, info, rm, n_generations, max_new_tokens)
    report.update(
        {
            "task": "preference",
            "data": str(data),
            "n_pairs": len(pairs),
            "adapter": str(adapter),
            "method": info["method"],
            "wall_time_s": round(time.time() - started, 2),
        }
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report


# --------------------------------------------------------------------------- policies


def _evaluate_policy_run(
    model_name: str | None, adapter: Path, pairs: list[dict], info: dict, rm: Any, n_gen: int, max_new: int
) -> dict[str, Any]:
    from tunesmith.models.inference import load_for_inference

    policy, tok = load_for_inference(model_name, adapter, dtype="float32")
    base_model = (
        None
        if hasattr(policy, "disable_adapter")
        else load_for_inference(model_name or info["base_model"], None, dtype="float32")[0]
    )
    with _as_base(policy, base_model) as base:
        base_lp = pair_logps(base, tok, pairs)
    tuned_lp = pair_logps(policy, tok, pairs)
    beta = info["beta"]
    m_base = [c - r for c, r in base_lp]
    m_tuned = [c - r for c, r in tuned_lp]
    candidates = {
        "base": {"metrics": _policy_metrics(m_base, m_base, beta)},
        "finetuned": {"metrics": _policy_metrics(m_tuned, m_base, beta)},
    }
    gens = _generations(policy, base_model, tok, pairs, candidates, n_gen, max_new, Path(rm) if rm else None)
    return {
        "candidates": candidates,
        "generations": gens,
        "beta": beta,
        "reward_model": str(rm) if rm else None,
    }


def _policy_metrics(margins: list[float], base_margins: list[float], beta: float) -> dict[str, float]:
    rm = [beta * (m - b) for m, b in zip(margins, base_margins, strict=True)]
    return {
        "preference_accuracy": preference_accuracy(margins),
        "reward_margin": sum(rm) / len(rm),
        "logp_margin": sum(margins) / len(margins),
    }


@contextlib.contextmanager
def _as_base(policy: Any, base_model: Any):
    """The base model: the policy with its adapter disabled (shared weights), or a separately loaded copy."""
    if base_model is not None:
        yield base_model
    else:
        with policy.disable_adapter():
            yield policy


def _answers(
    policy: Any, base_model: Any, tok: Any, prompts: list[list[dict]], max_new: int
) -> tuple[list[str], list[str]]:
    from tunesmith.models.generate import GenerationSettings, generate

    settings = GenerationSettings(max_tokens=max_new)
    with _as_base(policy, base_model) as base:
        before = [g.text for g in generate(base, tok, prompts, settings)]
    after = [g.text for g in generate(policy, tok, prompts, settings)]
    return before, after


def _generations(
    policy: Any,
    base_model: Any,
    tok: Any,
    pairs: list[dict],
    candidates: dict,
    n_gen: int,
    max_new: int,
    rm: Path | None,
) -> list[dict[str, Any]]:
    """Greedy base and finetuned answers side by side (the first ``n_gen`` prompts). With a reward model,
    every pair prompt is answered and scored: ``generated_reward`` per candidate (before vs after)."""
    n = len(pairs) if rm is not None else min(n_gen, len(pairs))
    if n == 0:
        return []
    prompts = [list(p["prompt"]) for p in pairs[:n]]
    before, after = _answers(policy, base_model, tok, prompts, max_new)
    gens = [
        {"prompt": p[-1]["content"], "chosen": pair["chosen"][0]["content"], "base": b, "finetuned": a}
        for p, pair, b, a in zip(prompts, pairs, before, after, strict=False)
    ]
    if rm is not None:
        from tunesmith.models.scoring import load_reward_scorer

        scorer = load_reward_scorer(rm)
        s_before = scorer.score(
            [p + [{"role": "assistant", "content": t}] for p, t in zip(prompts, before, strict=True)]
        )
        s_after = scorer.score(
            [p + [{"role": "assistant", "content": t}] for p, t in zip(prompts, after, strict=True)]
        )
        candidates["base"]["metrics"]["generated_reward"] = sum(s_before) / n
        candidates["finetuned"]["metrics"]["generated_reward"] = sum(s_after) / n
        for g, sb, sa in zip(gens, s_before, s_after, strict=True):
            g["base_reward"], g["finetuned_reward"] = sb, sa
    return gens[:n_gen]


# --------------------------------------------------------------------------- reward models


def _evaluate_reward_run(
    model_name: str | None, adapter: Path, pairs: list[dict], info: dict
) -> dict[str, Any]:
    from tunesmith.models.load import load_causal_lm, load_tokenizer
    from tunesmith.models.scoring import load_reward_scorer

    scorer = load_reward_scorer(adapter)
    scores = scorer.pair_scores(pairs)
    diffs = [c - r for c, r in scores]
    base_name = model_name or info["base_model"]
    base_lp = pair_logps(load_causal_lm(base_name, dtype="float32"), load_tokenizer(base_name), pairs)
    m_base = [c - r for c, r in base_lp]
    return {
        "candidates": {
            "base": {
                "metrics": {
                    "preference_accuracy": preference_accuracy(m_base),
                    "reward_margin": None,
                    "logp_margin": sum(m_base) / len(m_base),
                }
            },
            "finetuned": {
                "metrics": {
                    "preference_accuracy": preference_accuracy(diffs),
                    "reward_margin": sum(diffs) / len(diffs),
                }
            },
        },
        "generations": [
            {
                "prompt": p["prompt"][-1]["content"],
                "chosen": p["chosen"][0]["content"],
                "rejected": p["rejected"][0]["content"],
                "score_chosen": c,
                "score_rejected": r,
            }
            for p, (c, r) in list(zip(pairs, scores, strict=True))[:3]
        ],  # fmt: skip
    }


def _run_info(run: Path) -> dict[str, Any]:
    """method, base_model, beta and reward_model of a run folder (from summary.json / config.resolved.yaml)."""
    if not run.exists():
        raise TunesmithError(
            f"--adapter {run} does not exist.", "Pass the folder of a finished training run (runs/<id>)."
        )
    from tunesmith.results.run import read_run_summary

    summary = read_run_summary(run) if (run / "summary.json").exists() else None
    extras = summary.extras if summary is not None else None
    cfg = (
        yaml.safe_load((run / "config.resolved.yaml").read_text())
        if (run / "config.resolved.yaml").exists()
        else {}
    )
    train = (cfg or {}).get("train", {})
    return {
        "method": (summary.method if summary else None) or train.get("method") or "sft",
        "base_model": (summary.base_model if summary else None) or (cfg or {}).get("model", {}).get("name"),
        "beta": float(getattr(extras, "beta", None) or train.get("beta") or 0.1),
        "reward_model": getattr(extras, "reward_model", None) or train.get("reward_model"),
    }
