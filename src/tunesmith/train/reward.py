"""``method: reward``: a reward model (a scalar head on the base) trained on preference pairs on tunesmith's
own loop, with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) (TRL ``RewardTrainer``'s).

The flow is ``train/pref_run.py`` (shared with ``method: dpo``); packing and the loss are
``train/pref_engine.py``. Design choices (docs/preference.md):

- The head is ``AutoModelForSequenceClassification(num_labels=1)`` on the base: it reads the hidden state of
  the last token of the whole conversation rendered with the chat template. With LoRA the head trains
  fully (peft ``SEQ_CLS`` keeps ``score`` in ``modules_to_save``) and is saved in the adapter.
- Scoring (``tunesmith.models.scoring.RewardScorer``) renders a conversation exactly as training did, so
  ``tunesmith score``, the PPO reward and evaluation all see the same numbers.
- Pairwise accuracy counts a tie as a miss (an untrained head that scores everything alike is at 0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.models.scoring import quiet_load_report
from tunesmith.train.runs import RunResult


def run(
    cfg: ProjectConfig,
    *,
    resume: Path | None = None,
    force: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a reward model on ``cfg``'s preference pairs (contract: train/api.py; resumable like sft)."""
    from tunesmith.train import pref_run

    return pref_run.run(
        "reward", cfg, resume=resume, force=force, on_progress=on_progress, should_stop=should_stop
    )


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
