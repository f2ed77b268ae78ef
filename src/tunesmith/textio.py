"""Reading user files safely: bounded reads and one text-normalisation path for every reader.

Every reader of user input (data files of every format, folders of text files, configs, price files) goes
through here, so they all agree:

- ``read_bounded(path)`` refuses anything that is not a regular file *before* reading it (a FIFO, a device
  such as ``/dev/zero``, a socket; exit code 2), and reads at most ``max_input_bytes()`` bytes
  (``TUNESMITH_MAX_INPUT_BYTES``, default 1 GiB), so an endless or growing file cannot take the machine's
  memory.
- ``split_lines(raw)`` / ``decode_text(raw)``: a UTF-8 BOM is stripped (and counted), CRLF and lone CR line
  ends become LF, text is NFC-normalised.
- ``parse_json(text)`` turns every way ``json.loads`` can fail (syntax, nesting too deep, an integer of more
  than 4,300 digits) into one ``InvalidJSON`` error with a message fit to show a user.
- ``clean_strings(obj)`` applies the same normalisation to the strings inside parsed JSON (escapes such as
  ``\\r\\n`` or ``e\\u0301``) and refuses lone surrogates (``\\ud800``), which no UTF-8 encoder (and so no
  tokenizer) accepts.

Usage::

    raw = read_bounded(path)                   # bytes, or TunesmithError
    for n, line in enumerate(split_lines(raw), 1): ...
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

MAX_INPUT_BYTES = 1 << 30  # 1 GiB: far above any fine-tuning set one machine trains on, far below its memory
LIMIT_ENV = "TUNESMITH_MAX_INPUT_BYTES"
BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20


class InvalidJSON(ValueError):
    """A JSON text that cannot be used; ``message`` is fit to show a user, ``column`` is 1-based (0 unknown)."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message, self.column = message, column


class InvalidText(ValueError):
    """A string that is not valid Unicode text (a lone surrogate); ``message`` names where it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- bounded reads


def max_input_bytes() -> int:
    """The cap on bytes read from one input: ``TUNESMITH_MAX_INPUT_BYTES`` when set, else 1 GiB.

    Raises:
        TunesmithError: when the environment variable is not a positive integer.
    """
    value = os.environ.get(LIMIT_ENV)
    if not value:
        return MAX_INPUT_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise TunesmithError(
            f"{LIMIT_ENV}={value!r} is not a positive number of bytes.",
            f"Unset it, or set e.g. {LIMIT_ENV}=4294967296 for 4 GiB.",
            exit_code=2,
        )
    return limit


def read_bounded(path: Path | str, *, limit: int | None = None, what: str = "Input") -> bytes:
    """All bytes of the regular file ``path``, at most ``limit`` (default ``max_input_bytes()``) of them.

    The file is opened non-blocking and checked with ``fstat`` before any read, so a FIFO without a writer
    does not hang and a device (``/dev/zero``, ``/dev/urandom``, also behind a symlink) is refused rather
    than read forever. A file that is, or grows, larger than the limit is refused after reading at most
    ``limit + 1`` bytes.

    Raises:
        TunesmithError: (exit code 2) for a missing, unreadable, non-regular or too large file.
    """
    path = Path(path)
    limit = max_input_bytes() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TunesmithError(f"{what} {path} does not exist.", "Check the path.", exit_code=2) from None
    except OSError as exc:
        raise TunesmithError(
            f"{what} {path} cannot be read: {exc.strerror}.",
            "Check the path and its permissions.",
            exit_code=2,
        ) from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TunesmithError(
                f"{what} {path} is {_kind(st.st_mode)}, not a regular file; tunesmith reads inputs only from "
                "regular files (a pipe or device may never end).",
                "Save the data to a file first, e.g. `cat source > data.jsonl`.",
                exit_code=2,
            )
        if st.st_size > limit:
            raise _too_large(path, what, limit, st.st_size)
        data = fh.read(st.st_size + 1)  # one allocation of the file's size in the usual case
        chunks = [data]
        total = len(data)
        while total <= limit and len(chunks[-1]) > 0 and total > st.st_size:  # it grows while we read
            chunk = fh.read(min(_READ_CHUNK, limit + 1 - total))
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_large(path, what, limit, None)
    return data if len(chunks) == 1 else b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _too_large(path: Path, what: str, limit: int, size: int | None) -> TunesmithError:
    got = f"{size:,} bytes" if size is not None else "growing while read"
    return TunesmithError(
        f"{what} {path} is over the {limit:,}-byte input limit ({got}).",
        f"Split it into smaller files, or raise the limit with {LIMIT_ENV}=<bytes> (see docs/data.md).",
        exit_code=2,
    )


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class DecodedText:
    """A decoded, normalised text file and what normalising it changed."""

    text: str
    bom: bool
    crlf: int  # CRLF line ends turned into LF
    cr: int  # lone CR line ends turned into LF
    nfc: bool  # NFC normalisation changed the text


def strip_bom(raw: bytes) -> tuple[bytes, bool]:
    """``raw`` without a leading UTF-8 byte-order mark, and whether there was one."""
    return (raw[len(BOM) :], True) if raw.startswith(BOM) else (raw, False)


def split_lines(raw: bytes, notes: Counter[str] | None = None) -> list[bytes]:
    """The lines of ``raw`` (BOM stripped; LF, CRLF and lone CR all end a line), without their line ends.

    ``notes`` (when given) counts ``bom``, ``crlf`` and ``cr`` as ``decode_text`` does. Line ``n`` (1-based)
    is ``result[n - 1]`` for every reader, so line numbers in errors agree with ``data split``'s copies.
    """
    raw, bom = strip_bom(raw)
    if notes is not None and bom:
        notes["bom"] += 1
    if b"\r" in raw:
        crlf = raw.count(b"\r\n")
        raw = raw.replace(b"\r\n", b"\n")
        cr = raw.count(b"\r")
        raw = raw.replace(b"\r", b"\n")
        if notes is not None:
            notes["crlf"] += crlf
            notes["cr"] += cr
    return raw.split(b"\n")


def decode_text(raw: bytes) -> DecodedText:
    """Decode UTF-8 bytes (BOM stripped), turn CRLF / CR into LF and NFC-normalise.

    Raises:
        UnicodeDecodeError: for bytes that are not UTF-8 (``exc.start`` is relative to ``raw``).
    """
    body, bom = strip_bom(raw)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        off = len(BOM) if bom else 0
        raise UnicodeDecodeError(exc.encoding, raw, exc.start + off, exc.end + off, exc.reason) from None
    crlf = cr = 0
    if "\r" in text:
        crlf = text.count("\r\n")
        text = text.replace("\r\n", "\n")
        cr = text.count("\r")
        text = text.replace("\r", "\n")
    changed = False
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text, changed = unicodedata.normalize("NFC", text), True
    return DecodedText(text, bom, crlf, cr, changed)


def normalize_string(s: str) -> str:
    """One string as every reader leaves it: CRLF / CR to LF, NFC.

    Raises:
        InvalidText: when ``s`` holds a lone surrogate (from a JSON escape such as ``\\ud800``).
    """
    if s.isascii():
        return s.replace("\r\n", "\n").replace("\r", "\n") if "\r" in s else s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = s[exc.start]
        raise InvalidText(
            f"holds an unpaired surrogate \\u{ord(bad):04x} at character {exc.start + 1}, "
            "which is not a character (no tokenizer can encode it)"
        ) from None
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s if unicodedata.is_normalized("NFC", s) else unicodedata.normalize("NFC", s)


def clean_strings(obj: Any) -> Any:
    """``obj`` (parsed JSON) with every string, keys included, passed through ``normalize_string``.

    Raises:
        InvalidText: naming the field path (``messages[2].content``) of the first lone surrogate.
    """
    if isinstance(obj, str):
        return normalize_string(obj)
    try:
        if isinstance(obj, list):
            out_list = []
            for i, v in enumerate(obj):
                where = f"[{i}]"
                out_list.append(clean_strings(v))
            return out_list
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                where = f".{k} (key)"
                key = normalize_string(k) if isinstance(k, str) else k
                where = f".{k}"
                out[key] = clean_strings(v)
            return out
    except InvalidText as exc:  # the path is built only on this (rare) way out
        raise InvalidText(_join_path(where, exc.message)) from None
    return obj


def _join_path(step: str, message: str) -> str:
    if message.startswith((".", "[")):
        return step + message
    return f"{step} {message}"


def needs_cleaning(text: str) -> bool:
    """Whether the JSON text ``text`` may parse to strings that ``clean_strings`` would change or refuse."""
    # three C-speed scans; one regex alternation over the line was 20 us per 1 kB line (2 s per 100k lines)
    return not text.isascii() or "\\u" in text or "\\r" in text


# --------------------------------------------------------------------------- JSON


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` with one error type for every failure a user's input can cause.

    Raises:
        InvalidJSON: for a syntax error (message and column from the parser), nesting too deep for the
            parser, or an integer of more than 4,300 digits (Python's int-string conversion limit).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (column {exc.colno})", exc.colno) from None
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:  # int('9' * 5000): "Exceeds the limit (4300 digits) ..."
        if "digits" in str(exc):
            raise InvalidJSON("holds an integer of more than 4,300 digits, which no field can use") from None
        raise InvalidJSON(str(exc)[:200]) from None
