"""Personal data in training text: e-mail addresses, phone numbers, payment card numbers, IBANs.

Design (docs/data.md): presidio was the first choice, but its default engine needs a spaCy language model
that cannot be installed offline, and its pattern recognisers for these four entities are themselves
regular expressions with checksum validators. So tunesmith uses its own four patterns with the same
validators: card numbers must pass the Luhn check (13-19 digits), IBANs the ISO 13616 mod-97 check with
the right length for their country prefix, phone numbers need 9-12 digits (9-15 after a leading +, as E.164 allows) and a phone-like shape (a
leading + or separators), so order numbers and dates do not match. Each text is scanned only when a cheap
pre-filter (an ``@``, or a run of digits) says it could match, which keeps 100,000 examples fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,5}(?![\w])|(?<![\w+])\+\d{9,15}(?!\w)"
)
CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_DIGITS = re.compile(r"\d{3}")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")

# ISO 13616 lengths for common countries; others are accepted at 15-34 characters when mod-97 holds.
IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
    "GR": 27, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24,
}  # fmt: skip


@dataclass(frozen=True)
class PiiHit:
    kind: str  # email | phone | card | iban
    text: str


def find_pii(text: str) -> list[PiiHit]:
    """Every e-mail, phone number, valid card number and valid IBAN in ``text``."""
    hits: list[PiiHit] = []
    if "@" in text:
        hits += [PiiHit("email", m.group()) for m in EMAIL.finditer(text)]
    has_digits = _DIGITS.search(text) is not None
    if has_digits:
        cards = [m.group() for m in CARD.finditer(text) if luhn_ok(m.group())]
        hits += [PiiHit("card", c) for c in cards]
        ibans = [m.group() for m in IBAN.finditer(text) if iban_ok(m.group())]
        hits += [PiiHit("iban", i) for i in ibans]
        taken = " ".join(cards + ibans)
        for m in PHONE.finditer(text):
            number = m.group()
            if number in taken or _DATE.match(number):
                continue
            digits = sum(ch.isdigit() for ch in number)
            if 9 <= digits <= (15 if number.startswith("+") else 12):  # E.164 allows 15 with the country code
                hits.append(PiiHit("phone", number))
    return hits


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "").upper()
    country = s[:2]
    if IBAN_LENGTHS.get(country, len(s)) != len(s) or not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1
