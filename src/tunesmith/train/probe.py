"""The forgetting probe: a small built-in set of general questions with short, uncontroversial answers.

Its hold-out style loss (assistant tokens only) is measured before and after training. A rise means the
fine-tune overwrote general ability (typically a learning rate too high for full fine-tuning); the
summary reports ``before``, ``after`` and the relative ``increase``. It is a smoke alarm, not a benchmark.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.tokenize import tokenize_chat

PROBE: list[tuple[str, str]] = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("What is 12 plus 30?", "12 plus 30 is 42."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Name the largest planet in our solar system.", "Jupiter is the largest planet in our solar system."),
    ("What do bees make?", "Bees make honey."),
    ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare wrote 'Romeo and Juliet'."),
    ("What is the opposite of 'hot'?", "The opposite of 'hot' is 'cold'."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Write a short greeting.", "Hello! How can I help you today?"),
]


def probe_loss(model: Any, tokenizer: Any, cfg: ProjectConfig) -> float:
    """Mean token loss of the model's answers to the probe (lower is better)."""
    from tunesmith.train.loop import evaluate

    examples = [
        tokenize_chat(
            tokenizer,
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            cfg.data.max_seq_len,
        )
        for q, a in PROBE
    ]
    return evaluate(model, examples, cfg)


def forgetting_report(before: float, after: float) -> dict[str, float]:
    return {
        "before": round(before, 4),
        "after": round(after, 4),
        "increase": round((after - before) / before, 4) if before else 0.0,
    }
