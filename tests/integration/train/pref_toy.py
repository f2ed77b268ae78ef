"""Learnable toy preference data for the preference tests (written to JSONL so the real loader runs)."""

from __future__ import annotations

import json
from pathlib import Path

FACTS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
    ("Which planet is closest to the sun?", "Mercury is closest to the sun."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("What animal says moo?", "A cow says moo."),
    ("How many days are in a week?", "A week has seven days."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("What do you use to write on paper?", "You write on paper with a pen."),
    ("What fruit is yellow and long?", "A banana is yellow and long."),
    ("Where do fish live?", "Fish live in water."),
    ("What do plants need from the sun?", "Plants need light from the sun."),
    ("How many hours are in a day?", "A day has twenty four hours."),
    ("What do cows drink?", "Cows drink water."),
    ("What colour is grass?", "Grass is green."),
    ("What do birds use to fly?", "Birds fly with their wings."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What season comes after winter?", "Spring comes after winter."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
]


def caps_pairs(n: int | None = None) -> list[dict]:
    """Chosen = the answer in CAPITALS, rejected = the same answer in normal case: a style no base model
    prefers, so a base scores ~0% and learning shows as a clear rise."""
    rows = [{"prompt": q, "chosen": a.upper(), "rejected": a} for q, a in FACTS[: n or len(FACTS)]]
    return rows


def exclaim_pairs() -> list[dict]:
    """Chosen = the answer ending in '!', rejected = the same answer ending in '.': one token apart, at the
    same place in every pair, so a preference learned on a few pairs carries over to unseen ones."""
    return [{"prompt": q, "chosen": a[:-1] + "!", "rejected": a} for q, a in FACTS]


def yes_no_pairs(n: int = 16) -> list[dict]:
    """The tiny model's task: always prefer the answer 'yes' to 'no'."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Is {i} a number?"}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def long_pairs(n: int, passage_sentences: int = 76) -> list[dict]:
    """``n`` pairs of ~600 tokens a side (SmolLM2's tokenizer): a passage built from the facts, a question, and
    the exclaim/period answer pair repeated into a short paragraph (the shape of issue 20's DPO set)."""
    rows = []
    for i in range(n):
        facts = [FACTS[(i + k) % len(FACTS)][1] for k in range(passage_sentences)]
        q, a = FACTS[i % len(FACTS)]
        prompt = "Read this passage.\n\n" + " ".join(facts) + f"\n\nQuestion {i}: {q}"
        answer = " ".join([a] * 4)
        rows.append({"prompt": prompt, "chosen": answer.replace(".", "!"), "rejected": answer})
    return rows
