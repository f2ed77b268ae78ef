"""A seeded, mixed-length support-desk chat dataset for the training benchmarks.

Lengths are deliberately mixed (one-word labels, short answers, multi-paragraph answers, multi-turn
conversations) because that is where padding and full-vocabulary logits waste the most compute. The
answers follow learnable rules (the department depends on the keywords of the question, the reply quotes
the ticket number) so the hold-out loss measures learning, not noise.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_DEPTS = {
    "billing": ["invoice", "refund", "charge", "payment", "receipt", "subscription"],
    "technical": ["crash", "error", "login", "slow", "bug", "update"],
    "account": ["password", "email", "username", "profile", "delete", "security"],
}
_FILLER = [
    "I have been a customer for a few years and this never happened before",
    "It started after the last update on my laptop",
    "I tried restarting twice and clearing the cache as the help page says",
    "My colleague has the same plan and does not see this",
    "Could you look at it today, since our team depends on it for the monthly report?",
]
_STEPS = [
    "Open Settings and choose the {k} section.",
    "Check that the {k} details match the ones on your last statement.",
    "Sign out on every device, then sign in again.",
    "If the {k} problem remains, reply with a screenshot of the message.",
    "We will escalate ticket {t} to the {d} team within one business day.",
    "You will receive a confirmation email once the {k} change is processed.",
]


def make_chats(n: int, seed: int) -> list[dict]:
    """``n`` chat records (``{"messages": [...]}``), deterministic for ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        dept = rng.choice(list(_DEPTS))
        key = rng.choice(_DEPTS[dept])
        ticket = f"T-{rng.randint(1000, 9999)}"
        question = f"Ticket {ticket}: I have a problem with my {key}."
        question += " " + ". ".join(rng.sample(_FILLER, rng.randint(0, len(_FILLER))))
        kind = rng.random()
        if kind < 0.3:  # short: a label
            answer = dept
        elif kind < 0.75:  # medium: a few steps
            steps = rng.sample(_STEPS, rng.randint(2, 4))
            answer = f"Thanks for ticket {ticket}. " + " ".join(
                s.format(k=key, t=ticket, d=dept) for s in steps
            )
        else:  # long: every step, numbered
            answer = f"Ticket {ticket} ({dept}):\n" + "\n".join(
                f"{i + 1}. {s.format(k=key, t=ticket, d=dept)}" for i, s in enumerate(_STEPS)
            )
        messages = [
            {"role": "system", "content": "You are the support desk assistant. Route and answer tickets."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        if rng.random() < 0.2:  # a follow-up turn
            messages += [
                {"role": "user", "content": f"Which team handles {ticket}?"},
                {"role": "assistant", "content": f"The {dept} team handles {ticket}."},
            ]
        out.append({"messages": messages})
    return out


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
