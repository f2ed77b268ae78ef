"""``method: reward``: a reward model (a scalar head on the base) trained on preference pairs with TRL's
``RewardTrainer`` (Bradley-Terry loss: -log sigmoid(r_chosen - r_rejected)).

    pairs  -> load_pairs (hold-out split)          model  -> base + scalar head (+ LoRA by default)
    before -> hold-out pairwise accuracy           fit    -> RewardTrainer
    after  -> hold-out pairwise accuracy           save   -> adapter/ (LoRA + head) or model/, summary.json

Design choices (docs/preference.md):

- The head is ``AutoModelForSequenceClassification(num_labels=1)`` on the base: it reads the hidden state of
  the last non-padding token of the whole conversation rendered with the chat template. With LoRA the
  head trains fully (peft ``SEQ_CLS`` keeps ``score`` in ``modules_to_save``) and is saved in the adapter.
- Scoring (``tunesmith.models.scoring.RewardScorer``) renders a conversation exactly as training did, so ``tunesmith score``, the
  PPO reward and evaluation all see the same numbers.
- Pairwise accuracy counts a tie as a miss (an untrained head that scores everything alike is at 0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.models.scoring import RewardScorer, preference_accuracy, quiet_load_report
from tunesmith.results.run import RewardExtras
from tunesmith.train.pref_common import (
    MetricsSink,
    Pairs,
    curve_measures,
    fit,
    load_pairs,
    no_progress_bars,
    preference_run,
    quiet,
    trl_args,
)
from tunesmith.train.runs import Run, RunResult


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a reward model on ``cfg``'s preference pairs into a new run folder (contract: train/api.py)."""
    with preference_run("reward", cfg, resume, force) as run:
        return _train(run.cfg, run, on_progress, should_stop)


def _train(cfg: ProjectConfig, run: Run, on_progress: Any, should_stop: Any) -> RunResult:
    no_progress_bars()
    if cfg.train.finetune == "qlora":
        raise TunesmithError(
            "train.finetune: qlora is not supported for method: reward (the 4-bit base and the scalar head "
            "do not train together on CPU).",
            "Use finetune: lora (the default for reward models) or full.",
        )
    pairs = load_pairs(cfg)
    model, tokenizer = build_reward_model(cfg)
    before = RewardScorer(model, tokenizer, cfg.data.max_seq_len).pair_scores(pairs.holdout)
    sink = MetricsSink(run.log, on_progress, should_stop)
    trainer = build_trainer(cfg, model, tokenizer, pairs, run.run_dir / "trl", sink)
    fit(trainer, run.run_dir / "trl")
    after = RewardScorer(trainer.model, tokenizer, cfg.data.max_seq_len).pair_scores(pairs.holdout)
    run.save_weights(trainer.model, tokenizer)
    return run.finish(summarize(pairs, before, after, sink), "stopped" if sink.stopped else "completed")


def build_reward_model(cfg: ProjectConfig) -> tuple[Any, Any]:
    """The base with a freshly initialised scalar head; wrapped with LoRA unless ``finetune: full``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tunesmith.models.load import load_tokenizer, resolve_dtype, resolve_model_dir

    torch.manual_seed(cfg.train.seed)
    path = resolve_model_dir(cfg.model.name)
    tokenizer = load_tokenizer(cfg.model.name)
    with quiet_load_report():  # "score.weight MISSING": the new head is meant to start untrained
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=1,
            dtype=resolve_dtype(cfg.model.dtype, "cpu" if not torch.cuda.is_available() else "cuda"),
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.train.finetune == "full":
        return model, tokenizer
    from peft import get_peft_model

    from tunesmith.train.adapters import to_lora_config

    lora = to_lora_config(cfg.lora, cfg.train.finetune)
    lora.task_type = "SEQ_CLS"
    return get_peft_model(model, lora), tokenizer


def build_trainer(
    cfg: ProjectConfig, model: Any, tokenizer: Any, pairs: Pairs, out_dir: Path, sink: MetricsSink
) -> Any:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = trl_args(
        RewardConfig, cfg, out_dir, max_length=cfg.data.max_seq_len, center_rewards_coefficient=None
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs.train), processing_class=tokenizer
    )
    return quiet(trainer, sink)


def summarize(
    pairs: Pairs, before: list[tuple[float, float]], after: list[tuple[float, float]], sink: MetricsSink
) -> dict[str, Any]:
    m_before = [c - r for c, r in before]
    m_after = [c - r for c, r in after]
    extras = RewardExtras(
        holdout_pairwise_accuracy_before=preference_accuracy(m_before),
        holdout_pairwise_accuracy=preference_accuracy(m_after),
        holdout_reward_margin_before=sum(m_before) / len(m_before),
        holdout_reward_margin=sum(m_after) / len(m_after),
    )
    return {
        "train_examples": len(pairs.train),
        "holdout_examples": len(pairs.holdout),
        **curve_measures(sink),
        "extras": extras,
    }
