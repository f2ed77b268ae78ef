"""Two public-style data sets for the "defaults that learn" acceptance run (issue 20, deliverable 2).

Seeded and self-contained (written for tunesmith; no outside data), shaped like the public sets the issue
tried (a banking-intent set in the style of BANKING77/CLINC150, and an order-intake text-to-JSON set):

- ``intent``: short customer questions to a retail bank's assistant, 7 intents
  (``card_lost``, ``card_declined``, ``transfer``, ``balance``, ``dispute_charge``, ``change_pin``,
  ``close_account``). Each intent has several distinct *situations*, each written in several phrasings,
  with shared openers, context clauses and the occasional typo or all-lowercase message. Vocabulary is
  shared across intents on purpose ("card" is in four of them, "money"/"account"/"payment" in most), so
  a keyword or nearest-neighbour rule does not solve it.
- ``extraction``: free-text orders from a clothing shop's chat -> ``{"product", "quantity", "size",
  "color", "delivery"}``. Values are normalised the way the shop's system stores them (quantity as an
  integer, written numbers included; size as ``XS/S/M/L/XL``; colour ``null`` when not given; delivery
  ``express`` when the customer asks for speed, else ``standard``), and messages carry distractors
  (another size "I usually wear", a previous order's quantity).

Run: ``python bench/learn_data.py --task intent --out DIR [--train 320 --holdout 70 --seed 3]`` writes
``DIR/train.jsonl`` and ``DIR/holdout.jsonl`` (classification ``{"text", "label"}`` or extraction
``{"text", "fields"}``). The commands and results of the acceptance run are in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

INTENT_SYSTEM = (
    "You are the assistant of Harbor Bank. Classify the customer's message into one intent: "
    "balance, card_declined, card_lost, change_pin, close_account, dispute_charge, transfer. "
    "Answer with the intent only."
)
EXTRACTION_SYSTEM = (
    "You read clothing orders sent to the Thread & Co. chat. Answer with a JSON object with the keys "
    "product, quantity, size, color, delivery."
)

OPENERS = [
    "",
    "",
    "",
    "Hi,",
    "Hello,",
    "hey",
    "Good morning,",
    "Quick question:",
    "Sorry to bother you,",
    "Hi there,",
]
CLOSERS = ["", "", "", "", "Thanks", "thanks!", "Thank you.", "Please help.", "Cheers", "asap please"]
CONTEXT = [
    "",
    "",
    "",
    "",
    "",
    "I'm travelling at the moment.",
    "I just got paid today.",
    "This is my joint account with my wife.",
    "I use the mobile app mostly.",
    "My card is the silver debit one.",
    "I've been a customer for years.",
    "It's for my business account.",
]

INTENTS: dict[str, list[list[str]]] = {
    # each inner list: one situation, several phrasings
    "card_lost": [
        [
            "I can't find my card anywhere",
            "my card is missing",
            "I think I lost my debit card yesterday",
            "lost my card at the gym",
            "where do I report a lost card?",
        ],
        [
            "someone stole my wallet with the card in it",
            "my purse was stolen, card included",
            "my bag got nicked and my card was in it",
            "how do I freeze a stolen card",
        ],
        [
            "I left my card in an ATM and it's gone",
            "the cash machine kept my card",
            "the machine swallowed my card",
            "ATM ate my card what now",
        ],
        [
            "I need a replacement card because mine is lost",
            "can you send me a new card, the old one is gone",
            "order a new card please, I lost mine",
        ],
    ],
    "card_declined": [
        [
            "my card got declined at the supermarket",
            "why was my card refused at the shop",
            "card declined even though I have money",
            "payment with my card keeps failing",
        ],
        [
            "my card doesn't work for online shopping",
            "can't pay online, the card is rejected",
            "the website says my card was declined",
        ],
        [
            "my card isn't working abroad",
            "card refused at a restaurant in Spain",
            "my card won't work in the US",
        ],
        [
            "the contactless payment didn't go through",
            "tap to pay keeps getting declined",
            "apple pay says the payment was declined",
        ],
    ],
    "transfer": [
        [
            "how do I send money to my friend",
            "I want to transfer 200 to my brother",
            "send money to another account",
            "how can I pay someone by bank transfer",
        ],
        [
            "how long does a transfer take to arrive",
            "I sent money yesterday and it hasn't arrived",
            "my transfer is still pending",
        ],
        [
            "can I send money abroad",
            "how do I make an international transfer",
            "I need to wire money to my mum in Poland",
        ],
        [
            "what's the daily limit for transfers",
            "can I move 10000 between my accounts",
            "how do I move money from savings to current",
        ],
    ],
    "balance": [
        [
            "what's my balance",
            "how much money do I have",
            "check my account balance please",
            "how much is left in my account",
        ],
        [
            "how much is in my savings account",
            "what's the balance on my savings",
            "show me how much I have saved",
        ],
        [
            "why is my balance lower than I expected",
            "my balance looks wrong",
            "the app shows a different balance than the ATM",
        ],
        [
            "is my salary in my account yet",
            "has my pay landed in my account",
            "can you tell me if money came in today",
        ],
    ],
    "dispute_charge": [
        [
            "there's a payment on my card I don't recognise",
            "I see a charge I never made",
            "unknown transaction on my statement",
            "who is this payment to, I didn't make it",
        ],
        [
            "I was charged twice for the same thing",
            "double charge on my card from a shop",
            "the same payment went out two times",
        ],
        [
            "a merchant charged me but never sent the goods",
            "I paid for something that never arrived",
            "I want my money back from a shop that didn't deliver",
        ],
        [
            "I cancelled a subscription but they still took money",
            "they keep charging me after I cancelled",
            "how do I get a refund for a payment I disagree with",
        ],
    ],
    "change_pin": [
        ["how do I change my PIN", "I want a new PIN for my card", "can I change the pin number"],
        ["I forgot my PIN", "I can't remember my card pin", "what do I do if I forgot the PIN"],
        [
            "my PIN is blocked after three wrong tries",
            "I entered the wrong pin too many times",
            "card locked because of the wrong PIN",
        ],
        [
            "can I choose my own pin",
            "where can I set the PIN for my new card",
            "how do I unlock my PIN at an ATM",
        ],
    ],
    "close_account": [
        ["I want to close my account", "please close my bank account", "how do I shut down my account"],
        [
            "I'm moving to another bank, close everything",
            "I'm switching banks and want to leave",
            "cancel my account, I'm done with this bank",
        ],
        [
            "how do I close my savings account",
            "I'd like to close the joint account",
            "close my business account please",
        ],
        [
            "what happens to my money if I close the account",
            "will I get my balance back when I close",
            "are there fees for closing an account",
        ],
    ],
}

PRODUCTS = [
    "t-shirt",
    "hoodie",
    "denim jacket",
    "linen shirt",
    "chinos",
    "rain jacket",
    "wool sweater",
    "polo shirt",
    "cargo shorts",
    "summer dress",
    "puffer vest",
    "joggers",
]
COLORS = ["black", "white", "navy", "olive", "grey", "red", "beige", "forest green", "light blue", "burgundy"]
SIZES = {
    "XS": ["XS", "extra small", "xs"],
    "S": ["S", "small", "size S"],
    "M": ["M", "medium", "size M"],
    "L": ["L", "large", "size L"],
    "XL": ["XL", "extra large", "xl"],
}
NUMBERS = {
    1: ["one", "a", "1", "a single"],
    2: ["two", "2", "a couple of"],
    3: ["three", "3"],
    4: ["four", "4"],
    5: ["five", "5"],
    6: ["six", "6"],
    10: ["ten", "10"],
}
FAST = [
    "I need it by tomorrow",
    "with express shipping",
    "next-day delivery please",
    "can you rush it",
    "overnight if possible",
    "express please, it's a gift for Friday",
]
SLOW = ["", "", "", "no rush", "standard shipping is fine", "whenever it's ready"]


def intent_rows(n: int, rng: random.Random, *, heldout_phrases: bool) -> list[dict]:
    """``n`` messages, labels balanced. One phrasing of every situation (seeded) is reserved for the
    hold-out (``heldout_phrases=True``) and never used in training, so hold-out questions are new wordings,
    not the training questions with another greeting."""
    labels = sorted(INTENTS)
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        label = labels[len(rows) % len(labels)]
        situation = rng.choice(INTENTS[label])
        reserved = situation[random.Random(situation[0]).randrange(len(situation))]
        pool = [reserved] if heldout_phrases else [p for p in situation if p != reserved]
        phrase = rng.choice(pool)
        parts = [
            rng.choice(OPENERS),
            rng.choice(CONTEXT),
            phrase + rng.choice(["?", ".", "", "!"]),
            rng.choice(CLOSERS),
        ]
        if rng.random() < 0.5:  # context after the question, as often as before
            parts[1], parts[2] = parts[2], parts[1]
        text = " ".join(p for p in parts if p).strip()
        text = _noise(text, rng)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def extraction_rows(n: int, rng: random.Random) -> list[dict]:
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        product, qty, size = rng.choice(PRODUCTS), rng.choice(list(NUMBERS)), rng.choice(list(SIZES))
        color = rng.choice(COLORS) if rng.random() < 0.7 else None
        express = rng.random() < 0.35
        q_word = rng.choice(NUMBERS[qty])
        noun = product + ("s" if qty > 1 and not product.endswith("s") and q_word != "a" else "")
        item = f"{q_word} {color + ' ' if color else ''}{noun}"
        size_w = rng.choice(SIZES[size])
        templates = [
            f"I'd like to order {item} in {size_w}.",
            f"Can I get {item}, size {size_w.replace('size ', '')}?",
            f"Please send me {item} ({size_w}).",
            f"order: {item}, {size_w}",
            f"Hi, I want {item}. Size {size_w.replace('size ', '')} please.",
            f"Looking to buy {item} in {size_w} for my partner.",
        ]
        text = rng.choice(templates)
        if rng.random() < 0.3:  # a distractor size or quantity the answer must ignore
            other = rng.choice([s for s in SIZES if s != size])
            text += rng.choice(
                [
                    f" I usually wear {SIZES[other][1]} but this brand runs big.",
                    f" Last time I ordered {rng.choice(['two', 'three', 'five'])} and they were great.",
                ]
            )
        delivery = rng.choice(FAST) if express else rng.choice(SLOW)
        text = " ".join(p for p in (rng.choice(OPENERS), text, delivery + ("." if delivery else "")) if p)
        text = _noise(text, rng)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        fields = {
            "product": product,
            "quantity": qty,
            "size": size,
            "color": color,
            "delivery": "express" if express else "standard",
        }
        rows.append({"text": text, "fields": fields})
    return rows


def _noise(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15:
        return text.lower()
    if r < 0.22 and len(text) > 12:  # one swapped pair of letters, as typed on a phone
        i = rng.randrange(1, len(text) - 2)
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["intent", "extraction"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=320)
    ap.add_argument("--holdout", type=int, default=70)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    rng = random.Random(f"learn-data:{a.task}:{a.seed}")
    if a.task == "intent":
        parts = (
            intent_rows(a.train, rng, heldout_phrases=False),
            intent_rows(a.holdout, rng, heldout_phrases=True),
        )
    else:
        rows = extraction_rows(a.train + a.holdout, rng)
        parts = (rows[: a.train], rows[a.train :])
    a.out.mkdir(parents=True, exist_ok=True)
    for name, part in zip(("train", "holdout"), parts, strict=True):
        with (a.out / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    system = INTENT_SYSTEM if a.task == "intent" else EXTRACTION_SYSTEM
    (a.out / "tunesmith.yaml").write_text(
        "# written by bench/learn_data.py: no training overrides, the defaults choose\n"
        "model:\n  name: smollm2-135m-instruct\n"
        f"data:\n  train: train.jsonl\n  holdout: holdout.jsonl\n  task: {'classification' if a.task == 'intent' else 'extraction'}\n"
        f"  system_prompt: {json.dumps(system)}\n"
        "train:\n  output_dir: runs\n",
        encoding="utf-8",
    )
    print(f"wrote {a.train} + {a.holdout} rows to {a.out}")


if __name__ == "__main__":
    main()
