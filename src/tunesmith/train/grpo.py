"""``method: grpo``: reinforcement fine-tuning with TRL's **GRPOTrainer** (Group Relative Policy Optimization,
Shao et al. 2024, DeepSeekMath), the reward a grader file (``train.grader``, OpenAI's grader JSON; what OpenAI's
reinforcement fine-tuning trains against) or a reward run (``train.reward_model``).

    prompts -> load_prompt_rows (train.prompts, else the prompts of data.train); each row is the grader's item
    reward  -> load_reward(cfg)
    policy  -> build_policy (base, or train.init_from = an SFT run); fp32 on CPU
    before  -> greedy answers to the probe prompts, graded
    fit     -> GRPOTrainer: num_generations samples per prompt, advantage = (reward - group mean) / group std,
               clipped ratio objective, KL penalty beta * KL(policy || ref) (ref = the adapter disabled)
    after   -> the probe prompts again; save adapter/ or model/, summary.json with reward per step in
               metrics.jsonl

The flow is rloo's (train/rloo.py ``train_trl_rl``); only the TRL trainer differs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.train.pref_common import preference_run
from tunesmith.train.rloo import train_trl_rl
from tunesmith.train.runs import RunResult


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a policy with GRPO against the run's grader (or reward model) into a new run folder
    (contract: train/api.py).

    Raises:
        TunesmithError: for ``resume``/``force``, missing prompts, or a grader/reward run that cannot load.
    """
    with preference_run("grpo", cfg, resume, force) as run:
        return train_trl_rl("grpo", run.cfg, run, on_progress, should_stop)
