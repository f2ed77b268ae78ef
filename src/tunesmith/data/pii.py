"""Personal data in training text: e-mail addresses, phone numbers, payment card numbers, IBANs.

Design (docs/data.md): presidio was the first choice, but its default engine needs a spaCy language model
that cannot be installed offline, and its pattern recognisers for these four entities are themselves
regular expressions with validators. So tunesmith uses its own candidates with validators:

- e-mail: the usual address pattern; a "top-level domain" that is an image file extension
  (``icon@2x.png``) is not an address.
- card: 13-19 digits that pass the Luhn check, start with 2-6 (the issuer digits of the card networks:
  Visa 4, Mastercard 2/5, Amex 3, Discover 6) and are grouped as cards are printed (no separators, groups
  of four, or Amex 4-6-5), so a Luhn-valid order number such as ``305-7789102-4456123`` is not a card
  (one in ten random digit strings passes Luhn).
- IBAN: the ISO 13616 mod-97 check with the right length for the country prefix.
- phone: a run of 7-15 digits with separators (space, ``.``, ``-``, parentheses) or a leading ``+``,
  not glued to an identifier (``NR-2026-10-0093``, ``SKU 400-1234-567/2``: a letter, ``-``, ``/``, ``#`` or
  ``.`` right before it, or a word character, ``/`` or a further ``-``/``.`` digit group right after), not a
  date, and then validated with Google's libphonenumber rules (the ``phonenumbers`` package, offline
  metadata): it must be a valid number (real number ranges and lengths) *and* be written with that
  country's digit grouping (``Leniency.STRICT_GROUPING``), for a leading ``+`` in the country it names,
  otherwise in one of ``PHONE_REGIONS``. Invoice and ticket numbers are rarely both valid and grouped like
  a phone number, so ``2026-10-0093`` (a valid US number, but US numbers group 3-3-4) is not one.
  A number written without any separator and without ``+`` (``4155552671``) is not reported: that is
  what order numbers look like. The North American ``(415) 555-2671`` form is a phone by its shape alone
  (nothing else is written so), which keeps fictional 555 numbers, outside the valid ranges, reported.

Each text is scanned only when a cheap pre-filter (an ``@``, or a run of digits) says it could match, and
phone candidates go to libphonenumber only after the shape checks, which keeps 100,000 examples fast.
Precision and recall on a labelled set of 85 strings are measured by a test (figures in docs/data.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.([A-Za-z]{2,})\b")
NOT_TLD = {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "pdf"}
PHONE = re.compile(r"(?<![\w+#/.-])(?:\+|\(\d{1,5}\)[ .-]?)?\d[\d .()-]{5,22}\d(?![\w/]|[.-]\d)")
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "IE", "SE", "PL", "IN", "AU", "BR", "MX", "JP")  # fmt: skip
CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_DIGITS = re.compile(r"\d[ .()-]?\d[ .()-]?\d")  # three digits, maybe separated: "06 12 34"
_GROUPED = phonenumbers.Leniency.STRICT_GROUPING  # valid, and digits grouped as the country writes them
_NANP_SHAPE = re.compile(r"^\(\d{3}\) ?\d{3}[ .-]\d{4}$")  # "(555) 123-4567": only phones look like this
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
        hits += [
            PiiHit("email", m.group()) for m in EMAIL.finditer(text) if m.group(1).lower() not in NOT_TLD
        ]
    has_digits = _DIGITS.search(text) is not None
    if has_digits:
        cards = [m.group() for m in CARD.finditer(text) if card_shape_ok(m.group()) and luhn_ok(m.group())]
        hits += [PiiHit("card", c) for c in cards]
        ibans = [m.group() for m in IBAN.finditer(text) if iban_ok(m.group())]
        hits += [PiiHit("iban", i) for i in ibans]
        taken = " ".join(cards + ibans)
        for m in PHONE.finditer(text):
            number = m.group().strip()
            if number not in taken and not _DATE.match(number) and phone_ok(number):
                hits.append(PiiHit("phone", number))
    return hits


def phone_ok(number: str) -> bool:
    """A phone number as people write one: 7-15 digits, separators or a leading ``+``, valid in its country
    (or in one of ``PHONE_REGIONS``) and grouped the way that country groups its numbers."""
    digits = sum(ch.isdigit() for ch in number)
    if not 7 <= digits <= 15 or (not number.startswith("+") and number.isdigit()):
        return False
    return _NANP_SHAPE.match(number) is not None or _phone_ok(number)


@lru_cache(maxsize=65_536)  # the same number in many examples is validated once
def _phone_ok(number: str) -> bool:
    for region in (None,) if number.startswith("+") else PHONE_REGIONS:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(parsed):
            continue  # cheap: most identifiers stop here, before the grouping check
        grouped = phonenumbers.PhoneNumberMatcher(number, region or "ZZ", _GROUPED)
        if any(m.raw_string == number for m in grouped):
            return True
    return False


def card_shape_ok(number: str) -> bool:
    """Starts with an issuer digit (2-6) and is written as cards are: one run of digits, groups of four
    (the last may be shorter), or Amex/Diners 4-6-5 / 4-6-4."""
    groups = [len(g) for g in re.split(r"[ -]", number) if g]
    if number[0] not in "23456":
        return False
    return len(groups) == 1 or all(g == 4 for g in groups[:-1]) or groups in ([4, 6, 5], [4, 6, 4])


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
