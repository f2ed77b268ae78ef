"""Write the tiny datasets in tests/assets/data/: one clean file per supported format and one broken file
per error code. Deterministic; `tests/unit/data/test_data_assets.py` checks the committed copies are current.

    python tests/assets/make_data_assets.py            # rewrite tests/assets/data/
    python tests/assets/make_data_assets.py OUT_DIR    # write elsewhere

Clean files (15 examples each, no errors and no warnings with `data check --model tiny`):
chat.jsonl (with a system prompt, a weight-0 turn and a tool call), completion.jsonl, classification.csv,
classification.jsonl, extraction.jsonl, preference_openai.jsonl, preference_trl.jsonl, text.txt, docs/ (a
folder of markdown files). Broken files: see BROKEN (file name -> the error code and line it must produce).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

TOPICS = [
    ("My invoice shows a charge I do not recognise from last Tuesday.", "billing"),
    ("The mobile app crashes every time I open the settings page.", "technical"),
    ("How do I change the email address on my account?", "account"),
    ("I was billed twice for the annual plan this month.", "billing"),
    ("Uploading a photo gives error 502 since the latest update.", "technical"),
    ("Please close my account and delete my personal data.", "account"),
    ("Can I get a refund for the unused months of my subscription?", "billing"),
    ("The export to PDF button does nothing in Firefox.", "technical"),
    ("I forgot my password and the reset link has expired.", "account"),
    ("Why did the price of my plan go up without notice?", "billing"),
    ("Search results load forever when I filter by date.", "technical"),
    ("Add my colleague as a second administrator, please.", "account"),
    ("Do you accept payment by bank transfer for the team plan?", "billing"),
    ("Notifications stopped arriving on my watch after pairing it again.", "technical"),
    ("Can I merge two accounts that I created by accident?", "account"),
]
ANSWERS = [
    "I am sorry about the unexpected charge. I have opened a billing review and you will hear back within two days.",
    "Thanks for reporting the crash. Please update to version 4.2, which fixes the settings page on most phones.",
    "Open Settings, then Profile, then Email. Enter the new address and confirm it from the message we send.",
    "You were charged twice by mistake. The duplicate payment is being refunded to your card now.",
    "Error 502 comes from our upload service. It is fixed now; please retry the upload and tell me if it fails.",
    "Your account is scheduled for closure, and all personal data will be erased within thirty days.",
    "Unused months of an annual plan are refunded pro rata. I have started the refund for you.",
    "Firefox blocks the download pop-up. Allow pop-ups for our site and the PDF export will start.",
    "I have sent a fresh reset link that stays valid for one hour. Check your spam folder too.",
    "Prices changed on the first of the month; the notice went out in March. I can switch you to a cheaper plan.",
    "Date filters on large workspaces are slow this week. Narrow the range to a month as a workaround.",
    "Invite your colleague under Team, Members, and choose the administrator role for them.",
    "Yes. Choose bank transfer at checkout and we will email the account details with your invoice.",
    "Unpair the watch, restart both devices and pair again; then allow notifications in the companion app.",
    "We can merge them for you. Reply with both addresses and tell us which one to keep.",
]
FIELDS = [
    (
        "Invoice 1001 from Acme Ltd dated 2024-01-31 for 120.50 EUR.",
        {"vendor": "Acme Ltd", "number": "1001", "amount": 120.5},
    ),
    (
        "Receipt: Blue Bottle Coffee, ticket 77, total 8.40 USD.",
        {"vendor": "Blue Bottle Coffee", "number": "77", "amount": 8.4},
    ),
    (
        "Bill no. 5521 issued by Northwind Traders, amount due 990.00.",
        {"vendor": "Northwind Traders", "number": "5521", "amount": 990.0},
    ),
    (
        "Globex invoice #3003 — please pay 45.99 within 30 days.",
        {"vendor": "Globex", "number": "3003", "amount": 45.99},
    ),
    (
        "Order confirmation 88-1 from Initech, total charged 300.",
        {"vendor": "Initech", "number": "88-1", "amount": 300.0},
    ),
    (
        "Umbrella Corp statement 4410 shows a balance of 12.00.",
        {"vendor": "Umbrella Corp", "number": "4410", "amount": 12.0},
    ),
    (
        "Tax invoice 9 from Soylent Foods: 64.25 inclusive of VAT.",
        {"vendor": "Soylent Foods", "number": "9", "amount": 64.25},
    ),
    (
        "Hooli cloud usage bill 2024-07, amount 1500.75 dollars.",
        {"vendor": "Hooli", "number": "2024-07", "amount": 1500.75},
    ),
    (
        "Vandelay Industries invoice 615 for latex supplies, 210.",
        {"vendor": "Vandelay Industries", "number": "615", "amount": 210.0},
    ),
    ("Wonka sweets ticket 12345, paid 3.10 in cash.", {"vendor": "Wonka", "number": "12345", "amount": 3.1}),
    (
        "Stark Industries invoice SI-42 totals 100000.00.",
        {"vendor": "Stark Industries", "number": "SI-42", "amount": 100000.0},
    ),
    ("Cyberdyne service charge 808, amount 59.", {"vendor": "Cyberdyne", "number": "808", "amount": 59.0}),
]
DOCS = [
    "Rivers carry sediment from the mountains to the sea, shaping valleys over thousands of years.",
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria kept alive with flour and water.",
    "The violin has four strings tuned in fifths: G, D, A and E.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside chloroplasts.",
    "Medieval scribes prepared parchment from calfskin, scraping and stretching it before writing.",
    "Compound interest grows a balance by adding interest to the principal at every period.",
    "Honeybees communicate the direction of flowers with a waggle dance on the comb.",
    "The Rosetta Stone carries one decree in hieroglyphic, demotic and ancient Greek scripts.",
    "Lichens are partnerships between a fungus and an alga or a cyanobacterium.",
    "Suspension bridges hang their deck from cables anchored at both ends of the span.",
    "A haiku traditionally has three lines of five, seven and five syllables.",
    "Glaciers move because ice deforms under its own weight and slides on meltwater.",
    "Tides rise and fall twice a day because of the pull of the moon and the sun.",
    "Saffron is the dried stigma of a crocus flower, harvested by hand.",
    "Printing presses with movable type spread across Europe in the late fifteenth century.",
]

SYSTEM = "You are the support assistant of Example Corp. Answer politely and briefly."


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def clean_files() -> dict[str, bytes]:
    chat = []
    for i, ((q, _), a) in enumerate(zip(TOPICS, ANSWERS, strict=True)):
        msgs = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]
        if i == 1:  # a multi-turn example whose first answer is context only (weight 0)
            msgs[2:2] = [
                {"role": "assistant", "content": "Which phone do you use?", "weight": 0},
                {"role": "user", "content": "An older Android tablet."},
            ]
        chat.append({"messages": msgs})
    chat.append(
        {
            "messages": [
                {"role": "user", "content": "What is the status of order 5521?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "order_status", "arguments": '{"order": "5521"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
                {
                    "role": "assistant",
                    "content": "Order 5521 has shipped and should arrive within three days.",
                },
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "order_status",
                        "description": "Look up an order.",
                        "parameters": {
                            "type": "object",
                            "properties": {"order": {"type": "string"}},
                            "required": ["order"],
                        },
                    },
                }
            ],
        }
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(TOPICS)
    return {
        "chat.jsonl": _jsonl(chat),
        "completion.jsonl": _jsonl(
            [{"prompt": q, "completion": a} for (q, _), a in zip(TOPICS, ANSWERS, strict=True)]
        ),
        "classification.csv": buf.getvalue().encode(),
        "classification.jsonl": _jsonl([{"text": q, "label": lab} for q, lab in TOPICS]),
        "extraction.jsonl": _jsonl([{"text": t, "fields": f} for t, f in FIELDS]),
        "preference_openai.jsonl": _jsonl(
            [
                {
                    "input": {"messages": [{"role": "user", "content": q}]},
                    "preferred_output": [{"role": "assistant", "content": a}],
                    "non_preferred_output": [{"role": "assistant", "content": "Not my problem."}],
                }
                if i % 2
                else {
                    "input": {"messages": [{"role": "user", "content": q}]},
                    "preferred_output": [{"role": "assistant", "content": a.split(".")[0] + "."}],
                    "non_preferred_output": [
                        {
                            "role": "assistant",
                            "content": "Please contact someone else about this, we cannot help you with anything related to it at all today.",
                        }
                    ],
                }
                for i, ((q, _), a) in enumerate(zip(TOPICS, ANSWERS, strict=True))
            ]
        ),
        "preference_trl.jsonl": _jsonl(
            [
                {
                    "prompt": q,
                    "chosen": a,
                    "rejected": "I don't know."
                    if i % 2
                    else "I really do not know anything about that topic and cannot say more, sorry, maybe ask again another day.",
                }
                for i, ((q, _), a) in enumerate(zip(TOPICS, ANSWERS, strict=True))
            ]
        ),
        "text.txt": ("\n".join(DOCS) + "\n").encode(),
        **{
            f"docs/notes{j}.md": (f"# Notes {j}\n\n" + "\n\n".join(DOCS[j * 5 : j * 5 + 5]) + "\n").encode()
            for j in range(3)
        },
    }


def _chat(i: int) -> dict:
    q, _ = TOPICS[i % len(TOPICS)]
    return {
        "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": ANSWERS[i % len(ANSWERS)]},
        ]
    }


def _with_bad_line(bad: str | bytes, at: int = 3, n: int = 11) -> bytes:
    """n good chat lines with ``bad`` as line ``at`` (1-based)."""
    lines = [json.dumps(_chat(i)).encode() for i in range(n)]
    lines.insert(at - 1, bad.encode() if isinstance(bad, str) else bad)
    return b"\n".join(lines) + b"\n"


# file -> (bytes, expected error code, expected line); every broken file is meant to fail with that error.
BROKEN: dict[str, tuple[bytes, str, int]] = {
    "broken/invalid_json.jsonl": (
        _with_bad_line('{"messages": [{"role": "user", "content": "hi"}'),
        "invalid_json",
        3,
    ),
    "broken/not_utf8.jsonl": (
        _with_bad_line(
            '{"messages": [{"role": "user", "content": "caf\u00e9"}, {"role": "assistant", "content": "ok"}]}'.encode(
                "latin-1"
            ),
            2,
        ),
        "not_utf8",
        2,
    ),
    "broken/utf16.jsonl": (json.dumps(_chat(0)).encode("utf-16"), "not_utf8", 0),
    "broken/binary.jsonl": (bytes(range(256)) * 4, "not_utf8", 0),
    "broken/empty.jsonl": (b"\n  \n", "empty_file", 0),
    "broken/not_an_object.jsonl": (_with_bad_line('["user", "hi"]', 5), "not_an_object", 5),
    "broken/missing_messages.jsonl": (_with_bad_line('{"messages": []}', 4), "missing_messages", 4),
    "broken/unknown_role.jsonl": (
        _with_bad_line(
            '{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "ok"}]}', 6
        ),
        "unknown_role",
        6,
    ),
    "broken/missing_content.jsonl": (
        _with_bad_line('{"messages": [{"role": "user"}, {"role": "assistant", "content": "ok"}]}', 2),
        "missing_content",
        2,
    ),
    "broken/no_assistant_message.jsonl": (
        _with_bad_line('{"messages": [{"role": "user", "content": "hello?"}]}', 7),
        "no_assistant_message",
        7,
    ),
    "broken/invalid_weight.jsonl": (
        _with_bad_line(
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "weight": 0.5}]}',
            3,
        ),
        "invalid_weight",
        3,
    ),
    "broken/bad_preference_pair.jsonl": (
        b"\n".join(
            [
                json.dumps({"prompt": q, "chosen": a, "rejected": "No."}).encode()
                for (q, _), a in zip(TOPICS, ANSWERS, strict=True)
            ][:4]
            + [json.dumps({"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}).encode()]
            + [
                json.dumps({"prompt": q, "chosen": a, "rejected": "No."}).encode()
                for (q, _), a in zip(TOPICS, ANSWERS, strict=True)
            ][4:]
        )
        + b"\n",
        "bad_preference_pair",
        5,
    ),
    "broken/mixed_formats.jsonl": (
        _with_bad_line('{"prompt": "2+2?", "completion": "4"}', 8),
        "mixed_formats",
        8,
    ),
    "broken/too_few_examples.jsonl": (
        b"".join(json.dumps(_chat(i)).encode() + b"\n" for i in range(4)),
        "too_few_examples",
        0,
    ),
    "broken/missing_column.csv": (
        b"question,label\n" + b"".join(f'"{q}",{lab}\n'.encode() for q, lab in TOPICS),
        "missing_column",
        1,
    ),
    "broken/missing_label_column.csv": (
        b"text,category\n" + b"".join(f'"{q}",{lab}\n'.encode() for q, lab in TOPICS),
        "missing_column",
        1,
    ),
}


def write(out: Path) -> list[Path]:
    files = dict(clean_files())
    files.update({name: data for name, (data, _, _) in BROKEN.items()})
    written = []
    for name, data in sorted(files.items()):
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        written.append(p)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    print(f"wrote {len(write(target))} files to {target}")
