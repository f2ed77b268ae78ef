"""Northwind Cloud support tickets, routed by an escalation policy: the bundled demo data set.

Seeded and self-contained (written for tunesmith; no outside data). Every ticket is built from parts
(greeting, problem, detail, sign-off) drawn from hand-written variants, so wording varies a lot while the
routing rule stays exact. Four queues:

- ``billing``   invoices, charges, refunds, plan prices;
- ``technical`` errors, crashes, sync, API, performance;
- ``account``   logins, passwords, users, email changes, data export;
- ``priority``  Northwind's escalation policy, which no prompt states and a general model cannot guess:
  a ticket goes to ``priority`` when the customer is on the **Enterprise** plan, when it mentions
  **legal** action or a **chargeback**, or when **production is down for the whole team**, whatever its topic.
  Words like "urgent" or "ASAP" alone do *not* escalate (they appear in ordinary tickets as decoys).

Run it: ``python examples/support_tickets/generate.py --out DIR [--train 160 --holdout 60 --seed 7]``
writes ``DIR/train.jsonl`` and ``DIR/holdout.jsonl`` (classification: ``{"text", "label"}``).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

LABELS = ("account", "billing", "priority", "technical")

GREETINGS = [
    "",
    "Hi,",
    "Hello,",
    "Hi team,",
    "Hello support,",
    "Good morning,",
    "Hey,",
    "Dear Northwind,",
    "To whom it may concern,",
]
SIGNOFFS = [
    "",
    "Thanks.",
    "Thanks in advance.",
    "Regards, {name}",
    "Cheers, {name}",
    "Best, {name}",
    "- {name}",
    "Thank you!",
]
NAMES = [
    "Priya",
    "Tomas",
    "Mei",
    "Jordan",
    "Aisha",
    "Lukas",
    "Sofia",
    "Daniel",
    "Keiko",
    "Omar",
    "Elena",
    "Sam",
]
PRODUCTS = [
    "the desktop app",
    "the iOS app",
    "the Android app",
    "the web dashboard",
    "the sync client",
    "the reporting module",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]

TOPICS: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {month} subscription.",
        "My invoice for {month} shows ${amount} but my plan costs less than that.",
        "Can I get a refund for the seats we removed last week?",
        "The card on file was billed ${amount} and I don't recognise the charge.",
        "Please send a corrected invoice with our VAT number on it.",
        "Why did my monthly price go up without notice?",
        "I downgraded my plan but I'm still paying the old price.",
        "How do I switch from monthly to annual billing?",
        "The receipt for my last payment never arrived.",
        "We were billed for {seats} seats but only use {fewer}.",
    ],
    "technical": [
        "{product} crashes as soon as I open a shared folder.",
        "Files stopped syncing between my laptop and {product}.",
        "The API returns a 500 error when I upload files larger than {size} MB.",
        "{product} is extremely slow since the last update.",
        "I get a blank white screen after logging in to {product}.",
        "Exports to CSV from {product} come out with broken characters.",
        "Webhooks stopped firing for new uploads.",
        "Search in {product} returns no results even for files I can see.",
        "Notifications are delayed by hours in {product}.",
        "The upload progress bar freezes at {pct}% every time.",
    ],
    "account": [
        "I can't log in, the password reset email never arrives.",
        "Please change the email address on my account to my new work address.",
        "How do I add a new user to our workspace?",
        "I need to remove a former employee's access.",
        "Two-factor authentication is locked after I changed phones.",
        "Can you merge my two accounts into one?",
        "I want to download a copy of all my data.",
        "How do I transfer ownership of the workspace to a colleague?",
        "My username shows an old surname, please update it.",
        "Please close my personal account, I only use the team one now.",
    ],
}
DETAILS = [
    "",
    "This started on {month} {day}.",
    "It happened again this morning.",
    "I tried another browser, same thing.",
    "Our account ID is NW-{acct}.",
    "I already restarted everything.",
    "A screenshot is attached.",
    "It affects only me as far as I know.",
]
DECOYS = [
    "This is urgent.",
    "Please help ASAP!",
    "Need this fixed quickly.",
    "URGENT:",
    "High importance, please reply today.",
]
# The escalation policy (not stated in any prompt): any one of these routes the ticket to priority.
TRIGGERS = [
    "We are on the Enterprise plan.",
    "Our company has an Enterprise contract with you.",
    "As an Enterprise customer we expect a fast answer.",
    "If this is not resolved our legal team will get involved.",
    "I have asked our lawyer to look into this.",
    "If this is not fixed I will file a chargeback with my bank.",
    "I am disputing the charge with my card issuer as a chargeback.",
    "Production is down for our whole team.",
    "All {seats} people in our office are blocked, production is down.",
    "Nobody in the company can work, our production environment is down.",
]


def make_ticket(rng: random.Random, label: str) -> dict[str, str]:
    """One ticket with its queue."""
    topic = rng.choice(list(TOPICS)) if label == "priority" else label
    fill = {
        "month": rng.choice(MONTHS), "day": rng.randint(1, 28), "amount": rng.choice([49, 120, 299, 1450, 18.5, 75]),
        "seats": rng.choice([12, 25, 40, 300]), "fewer": rng.choice([5, 8, 10]), "product": rng.choice(PRODUCTS),
        "size": rng.choice([10, 50, 100]), "pct": rng.choice([42, 87, 99]), "acct": rng.randint(1000, 9999),
        "name": rng.choice(NAMES),
    }  # fmt: skip
    parts = [rng.choice(GREETINGS), rng.choice(TOPICS[topic])]
    if label == "priority":
        trigger = rng.choice(TRIGGERS)
        parts.insert(rng.choice([1, 2]), trigger)
    elif rng.random() < 0.3:
        parts.insert(1, rng.choice(DECOYS))  # urgency words without a trigger do not escalate
    details = [
        d for d in DETAILS if label != "priority" or "only me" not in d
    ]  # no contradiction with an outage
    parts += [rng.choice(details), rng.choice(SIGNOFFS)]
    text = " ".join(p for p in parts if p).format(**fill)
    text = text[0].upper() + text[1:]
    return {"text": text, "label": label}


def generate(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` tickets, labels balanced (round robin over the queues, then shuffled); no duplicate texts."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        row = make_ticket(rng, LABELS[len(rows) % len(LABELS)])
        if row["text"] not in seen:
            seen.add(row["text"])
            rows.append(row)
    rng.shuffle(rows)
    return rows


def write_dataset(out: Path, n_train: int, n_holdout: int, seed: int = 7) -> tuple[Path, Path]:
    """Write train.jsonl and holdout.jsonl (disjoint texts) and return their paths."""
    rows = generate(n_train + n_holdout, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "train.jsonl", out / "holdout.jsonl")
    for path, part in zip(paths, (rows[:n_train], rows[n_train:]), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths


def write_all(path: Path, n: int, seed: int = 7) -> Path:
    """Write ``n`` tickets to one JSONL file (the demo checks and splits it itself)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in generate(n, seed)), encoding="utf-8"
    )
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=160)
    ap.add_argument("--holdout", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    for p in write_dataset(a.out, a.train, a.holdout, a.seed):
        print(p)
