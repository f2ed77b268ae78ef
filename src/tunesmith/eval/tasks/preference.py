"""Preference pairs: scored by log-probability margins of a trained run against its base, not by generation
(``tunesmith.eval.preference.evaluate``); this object turns that into an ``EvalReport`` with its gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.results.eval import Applied, Candidate, EvalReport, PreferenceInfo, write_eval_report

HEADLINE = ("preference_accuracy", "reward_margin", "logp_margin", "generated_reward")


@dataclass(frozen=True)
class PreferenceTask:
    """``{"prompt", "chosen", "rejected"}`` pairs; ``run`` evaluates a run folder on them."""

    name: str = "preference"
    headline: tuple[str, ...] = HEADLINE

    def run(self, spec: Any) -> EvalReport:
        """Evaluate ``spec.adapter`` (an ``EvalSpec``) and its base on the pairs in ``spec.data``; gate; write.

        Raises:
            TunesmithError: without ``--adapter``, or for an unusable run or data file.
        """
        from tunesmith.eval.gate import evaluate_gate
        from tunesmith.eval.preference import evaluate
        from tunesmith.eval.verdict import with_verdict

        if spec.adapter is None:
            raise TunesmithError(
                "Preference data is evaluated for a trained run.",
                "Pass --adapter RUN (a dpo, ppo, reward or sft run).",
            )
        raw = evaluate(
            model=spec.model,
            adapter=spec.adapter,
            data=spec.data,
            out=None,
            max_examples=spec.settings.max_examples,
            reward_model=spec.reward_run,
        )
        cands = {k: Candidate(metrics=v.get("metrics", {})) for k, v in raw["candidates"].items()}
        report = EvalReport(
            task="preference",
            n=raw["n_pairs"],
            candidates=cands,
            gate=evaluate_gate(spec.settings.require, cands),
            applied=Applied(
                families=["preference"],
                reason="preference pairs: log-probability margins of chosen over rejected answers",
            ),
            headline=list(self.headline),
            data=str(spec.data),
            adapter=str(spec.adapter),
            model=spec.model,
            wall_time_s=raw.get("wall_time_s"),
            preference=PreferenceInfo(
                n_pairs=raw["n_pairs"],
                method=raw.get("method"),
                beta=raw.get("beta"),
                reward_model=raw.get("reward_model"),
                generations=raw.get("generations") or [],
            ),
        )
        report = with_verdict(report)
        if spec.out is not None:
            write_eval_report(Path(spec.out), report)
        return report
