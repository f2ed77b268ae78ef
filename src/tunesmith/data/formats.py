"""Reading training data: JSONL / CSV / text files into canonical records, with per-line errors.

Canonical record shapes (plain dicts, so they serialise as they are):

- chat:           {"messages": [{"role", "content", "weight"?, "tool_calls"?...}], "tools"?, "parallel_tool_calls"?}
- completion:     {"prompt": str, "completion": str}
- classification: {"text": str, "label": str}
- extraction:     {"text": str, "fields": dict}
- preference:     {"prompt": [messages], "chosen": [one assistant message], "rejected": [one assistant message], "tools"?}
- text:           {"text": str}

``to_chat`` turns any supervised record into chat messages, so one tokenizer path serves every task.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import Task
from tunesmith.errors import TunesmithError
from tunesmith.textio import (
    InvalidJSON,
    InvalidText,
    clean_strings,
    decode_text,
    max_input_bytes,
    needs_cleaning,
    parse_json,
    read_bounded,
    split_lines,
    strip_bom,
)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
ROLES = {"system", "user", "assistant", "tool", "developer", "function"}
MAX_LINE_BYTES = 64 * 1024 * 1024  # a single line beyond this is reported, not parsed


@dataclass(frozen=True)
class Issue:
    """One problem on one line (1-based; 0 = the whole file)."""

    line: int
    code: str
    message: str
    hint: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message, "hint": self.hint}


@dataclass
class Record:
    line: int
    data: dict[str, Any]


@dataclass
class LoadedData:
    path: Path
    task: Task | None
    records: list[Record] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    # what reading normalised: bom (files), crlf / cr (line ends), nfc (lines or files changed); see textio
    normalised: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r.data for r in self.records]


class RowError(Exception):
    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class Columns:
    """Column names for classification/extraction tables."""

    text: str = "text"
    label: str = "label"
    fields: str = "fields"


# --------------------------------------------------------------------------- reading raw rows


def iter_raw_rows(
    path: Path, columns: Columns = Columns(), notes: Counter[str] | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` per row; a row that cannot be parsed yields an ``Issue`` instead.

    Every format is read through ``tunesmith.textio``: bounded reads of regular files only, BOM stripped,
    CRLF / CR line ends to LF, NFC, lone surrogates refused. ``notes`` (when given) counts what was
    normalised (``bom``, ``crlf``, ``cr``, ``nfc``).

    Raises:
        TunesmithError: when ``path`` is missing; (exit code 2) when it is not a regular file or folder,
            or over the input size limit (``textio.max_input_bytes``).
    """
    path = Path(path)
    notes = Counter() if notes is None else notes
    if not path.exists() and not path.is_symlink():
        raise TunesmithError(
            f"{path} does not exist.",
            "Check the path (relative paths start at the config's folder).",
        )
    if path.is_dir():
        yield from _iter_text_folder(path, notes)
        return
    suffix = path.suffix.lower()
    raw = read_bounded(path, what="Data file")
    if not strip_bom(raw)[0].strip():
        yield 0, Issue(0, "empty_file", f"{path.name} is empty.", "Add at least 10 examples, one per line.")
        return
    if b"\x00" in raw[:8192]:
        yield (
            0,
            Issue(
                0,
                "not_utf8",
                f"{path.name} looks like a binary file, not text.",
                "Export the data as UTF-8 JSONL or CSV.",
            ),
        )
        return
    if suffix == ".csv" or suffix == ".tsv":
        yield from _iter_csv(path, raw, "\t" if suffix == ".tsv" else ",", columns, notes)
    elif suffix in TEXT_SUFFIXES:
        yield from _iter_text_file(path, raw, notes)
    else:
        yield from _iter_jsonl(raw, notes)


def _iter_jsonl(raw: bytes, notes: Counter[str]) -> Iterator[tuple[int, Any]]:
    for i, line in enumerate(split_lines(raw, notes), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            yield (
                i,
                Issue(
                    i,
                    "line_too_long",
                    f"Line {i} is {len(line):,} bytes long.",
                    "Split or shorten this example.",
                ),
            )
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                i,
                Issue(
                    i,
                    "not_utf8",
                    f"Line {i} is not valid UTF-8 (byte {exc.start}).",
                    "Save the file as UTF-8.",
                ),
            )
            continue
        try:
            obj = parse_json(text)
        except InvalidJSON as exc:
            yield (
                i,
                Issue(
                    i,
                    "invalid_json",
                    f"Line {i} is not valid JSON: {exc.message}.",
                    "Each line must be one complete JSON object.",
                ),
            )
            continue
        if needs_cleaning(text):
            try:
                cleaned = clean_strings(obj)
            except InvalidText as exc:
                yield i, _surrogate_issue(i, exc)
                continue
            if cleaned != obj:
                notes["nfc"] += 1
            obj = cleaned
        yield i, obj


def _surrogate_issue(line: int, exc: InvalidText) -> Issue:
    return Issue(
        line,
        "not_utf8",
        f"Line {line}: {exc.message.lstrip('.')}.",
        "Remove the escape or replace it with the character meant (a \\ud800-\\udfff escape is only "
        "valid as half of a pair); training would fail on it.",
    )


def _iter_csv(
    path: Path, raw: bytes, delimiter: str, columns: Columns, notes: Counter[str]
) -> Iterator[tuple[int, Any]]:
    try:
        text = _decoded(raw, notes)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        yield line, Issue(line, "not_utf8", f"Line {line} is not valid UTF-8.", "Save the file as UTF-8.")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    if columns.text not in header:
        yield (
            1,
            Issue(
                1,
                "missing_column",
                f"{path.name} has no {columns.text!r} column (columns: {', '.join(header) or 'none'}).",
                f"Rename the input column to {columns.text!r}, or name it with data.text_field / --text-field.",
            ),
        )
        return
    if (
        columns.label not in header
        and columns.fields not in header
        and not set(header) <= {columns.text, "source", "id", "title", "meta"}
    ):
        yield (
            1,
            Issue(
                1,
                "missing_column",
                f"{path.name} has a {columns.text!r} column but no {columns.label!r} (classification) or {columns.fields!r} (extraction) column (columns: {', '.join(header)}).",
                f"Rename the label column to {columns.label!r}, or name it with data.label_field / --label-field.",
            ),
        )
        return
    try:
        for row in reader:
            line = reader.line_num
            row = {k: v for k, v in row.items() if k is not None}
            if columns.fields in row and isinstance(row[columns.fields], str):
                try:
                    row[columns.fields] = clean_strings(parse_json(row[columns.fields]))
                except InvalidText as exc:
                    yield line, _surrogate_issue(line, InvalidText(f"{columns.fields}{exc.message}"))
                    continue
                except InvalidJSON:
                    pass  # an unparsable value is reported by normalisation, with the field name
            yield line, row
    except csv.Error as exc:
        yield (
            reader.line_num,
            Issue(
                reader.line_num,
                "invalid_csv",
                f"CSV error: {exc}",
                "Quote fields that contain the delimiter or newlines.",
            ),
        )


def _iter_text_file(path: Path, raw: bytes, notes: Counter[str]) -> Iterator[tuple[int, Any]]:
    try:
        text = _decoded(raw, notes)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        yield (
            line,
            Issue(
                line, "not_utf8", f"{path.name} line {line} is not valid UTF-8.", "Save the file as UTF-8."
            ),
        )
        return
    if path.suffix.lower() == ".txt" and "\n\n" not in text.strip():
        for i, line in enumerate(text.split("\n"), start=1):  # one document per line
            if line.strip():
                yield i, {"text": line}
    else:
        yield 1, {"text": text}  # a whole markdown/prose file is one document


def _decoded(raw: bytes, notes: Counter[str]) -> str:
    """``textio.decode_text`` of a whole file, counting what it normalised into ``notes``."""
    dec = decode_text(raw)
    notes["bom"] += dec.bom
    notes["crlf"] += dec.crlf
    notes["cr"] += dec.cr
    notes["nfc"] += dec.nfc
    return dec.text


def _iter_text_folder(folder: Path, notes: Counter[str]) -> Iterator[tuple[int, Any]]:
    # is_file() is False for FIFOs and devices (also behind symlinks): they are never opened
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        yield (
            0,
            Issue(
                0,
                "empty_file",
                f"{folder} holds no .txt or .md files.",
                "Point at a file, or a folder of text files.",
            ),
        )
    budget = max_input_bytes()  # the limit holds for the folder as a whole
    for n, p in enumerate(files, start=1):
        raw = read_bounded(p, limit=budget, what=f"Data file (in folder {folder})")
        budget -= len(raw)
        try:
            yield n, {"text": _decoded(raw, notes), "source": str(p.relative_to(folder))}
        except UnicodeDecodeError:
            yield n, Issue(n, "not_utf8", f"{p} is not valid UTF-8.", "Save the file as UTF-8.")


# --------------------------------------------------------------------------- detection + normalisation


def detect_task(obj: Any, columns: Columns = Columns()) -> Task | None:
    if not isinstance(obj, dict):
        return None
    if "input" in obj or "preferred_output" in obj or "preferred_completion" in obj or "chosen" in obj:
        return "preference"
    if "messages" in obj:
        return "chat"
    if "prompt" in obj and "completion" in obj:
        return "completion"
    if columns.text in obj and columns.label in obj:
        return "classification"
    if columns.text in obj and columns.fields in obj:
        return "extraction"
    if set(obj) <= {"text", "source", "id", "title", "meta"} and "text" in obj:
        return "text"
    return None


def normalize(obj: Any, task: Task, columns: Columns = Columns()) -> dict[str, Any]:
    """Return the canonical record for ``obj`` or raise ``RowError`` naming the field and the fix."""
    if not isinstance(obj, dict):
        raise RowError(
            "not_an_object",
            f"Expected a JSON object, got {type(obj).__name__}.",
            "Each line must be one JSON object {...}.",
        )
    fn = _NORMALIZERS[task]
    return fn(obj, columns)


def _norm_chat(obj: dict, columns: Columns) -> dict:
    if "messages" not in obj:
        raise RowError(
            "missing_messages",
            "No 'messages' field.",
            'Chat lines look like {"messages": [{"role": "user", "content": "..."}, ...]}.',
        )
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise RowError(
            "missing_messages",
            "'messages' must be a non-empty list.",
            "Put the conversation turns in a list.",
        )
    out = [_norm_message(m, i) for i, m in enumerate(msgs)]
    if not any(m["role"] == "assistant" for m in out):
        raise RowError(
            "no_assistant_message",
            "The conversation has no assistant message to learn from.",
            "Add the ideal assistant reply as the last message.",
        )
    rec: dict[str, Any] = {"messages": out}
    for key in ("tools", "parallel_tool_calls"):
        if key in obj:
            rec[key] = obj[key]
    return rec


def _norm_message(m: Any, i: int, where: str = "messages") -> dict:
    if not isinstance(m, dict):
        raise RowError(
            "not_an_object",
            f"{where}[{i}] is not an object.",
            'Each message is {"role": ..., "content": ...}.',
        )
    role = m.get("role")
    if role not in ROLES:
        raise RowError(
            "unknown_role", f"{where}[{i}].role is {role!r}.", "Use one of system, user, assistant, tool."
        )
    content = m.get("content")
    has_calls = bool(m.get("tool_calls") or m.get("function_call"))
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None and has_calls:
        content = ""
    if not isinstance(content, str) or (not content.strip() and not has_calls):
        raise RowError(
            "missing_content",
            f"{where}[{i}] ({role}) has no text content.",
            "Give every message a non-empty 'content' string.",
        )
    msg: dict[str, Any] = {"role": role, "content": content}
    if "weight" in m:
        if role != "assistant" or m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
            raise RowError(
                "invalid_weight",
                f"messages[{i}].weight is {m['weight']!r}.",
                "weight is 0 or 1, and only on assistant messages.",
            )
        msg["weight"] = int(m["weight"])
    for key in ("tool_calls", "tool_call_id", "name", "function_call"):
        if key in m:
            msg[key] = m[key]
    return msg


def _norm_completion(obj: dict, columns: Columns) -> dict:
    p, c = obj.get("prompt"), obj.get("completion")
    if not isinstance(p, str) or not isinstance(c, str) or not c.strip():
        raise RowError(
            "missing_content",
            "'prompt' and 'completion' must both be strings, the completion non-empty.",
            'Lines look like {"prompt": "...", "completion": "..."}.',
        )
    return {"prompt": p, "completion": c}


def _norm_classification(obj: dict, columns: Columns) -> dict:
    text, label = obj.get(columns.text), obj.get(columns.label)
    if not isinstance(text, str) or not text.strip():
        raise RowError(
            "missing_content",
            f"Field {columns.text!r} is empty or missing.",
            "Every row needs the input text.",
        )
    if label is None or (isinstance(label, str) and not label.strip()) or isinstance(label, dict | list):
        raise RowError(
            "missing_label",
            f"Field {columns.label!r} is empty or missing.",
            "Every row needs exactly one label.",
        )
    return {"text": text, "label": str(label).strip()}


def _norm_extraction(obj: dict, columns: Columns) -> dict:
    text, fields = obj.get(columns.text), obj.get(columns.fields)
    if not isinstance(text, str) or not text.strip():
        raise RowError(
            "missing_content",
            f"Field {columns.text!r} is empty or missing.",
            "Every row needs the input text.",
        )
    if not isinstance(fields, dict):
        raise RowError(
            "invalid_fields",
            f"Field {columns.fields!r} must be a JSON object.",
            'Example: {"name": "Alice", "amount": 12.5}.',
        )
    return {"text": text, "fields": fields}


def _norm_preference(obj: dict, columns: Columns) -> dict:
    if "input" in obj:  # OpenAI DPO format
        inp = obj["input"]
        if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) or not inp["messages"]:
            raise RowError(
                "bad_preference_pair",
                "'input.messages' must be a non-empty list.",
                'Use {"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}.',
            )
        prompt = [_norm_message(m, i, "input.messages") for i, m in enumerate(inp["messages"])]
        c_name = "preferred_output" if "preferred_output" in obj else "preferred_completion"
        r_name = "non_preferred_output" if "non_preferred_output" in obj else "non_preferred_completion"
        chosen, rejected = obj.get(c_name), obj.get(r_name)
        p_name = "input.messages"
    else:  # TRL format: prompt/chosen/rejected as strings or message lists
        prompt = _as_messages(obj.get("prompt"), "user", "prompt")
        chosen, rejected = obj.get("chosen"), obj.get("rejected")
        c_name, r_name, p_name = "chosen", "rejected", "prompt"
    chosen = _as_messages(chosen, "assistant", c_name)
    rejected = _as_messages(rejected, "assistant", r_name)
    if prompt[-1]["role"] == "assistant":
        raise RowError(
            "bad_preference_pair",
            f"The {p_name} ends with an assistant turn (message {len(prompt) - 1}).",
            "The last prompt message must be the user's (or tool's) turn; move the assistant answer to the outputs.",
        )
    for name, out in ((c_name, chosen), (r_name, rejected)):
        if len(out) != 1:
            raise RowError(
                "bad_preference_pair",
                f"'{name}' must be exactly one assistant message (got {len(out)} messages).",
                "Give one assistant message per output; earlier turns belong in the prompt.",
            )
        if out[0]["role"] != "assistant":
            raise RowError(
                "bad_preference_pair",
                f"'{name}' must be an assistant message (got role {out[0]['role']!r}).",
                "Set the output message's role to assistant.",
            )
    if chosen[0]["content"].strip() == rejected[0]["content"].strip():
        raise RowError(
            "bad_preference_pair",
            f"'{c_name}' and '{r_name}' are identical.",
            "A pair must contrast two different answers.",
        )
    rec: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    tools = obj["input"].get("tools") if "input" in obj else obj.get("tools")
    if tools:  # rendered into the prompt by the chat template, as for chat rows
        rec["tools"] = tools
    return rec


def _as_messages(value: Any, role: str, name: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise RowError("bad_preference_pair", f"'{name}' is empty.", f"Give a non-empty {name}.")
        return [{"role": role, "content": value}]
    if isinstance(value, dict):  # a single message object
        value = [value]
    if isinstance(value, list) and value:
        return [_norm_message(m, i, name) for i, m in enumerate(value)]
    raise RowError(
        "bad_preference_pair",
        f"'{name}' is missing or empty.",
        f"Give '{name}' as a string or a list of messages.",
    )


def _norm_text(obj: dict, columns: Columns) -> dict:
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RowError("missing_content", "'text' is empty or missing.", "Each line holds one document.")
    return {"text": text}


_NORMALIZERS = {
    "chat": _norm_chat,
    "completion": _norm_completion,
    "classification": _norm_classification,
    "extraction": _norm_extraction,
    "preference": _norm_preference,
    "text": _norm_text,
}


# --------------------------------------------------------------------------- loading


def load_data(path: Path | str, task: Task | None = None, columns: Columns = Columns()) -> LoadedData:
    """Read every row, detect the format from the first parsable row (unless forced), normalise, and
    collect every error with its line; one bad line never hides the others."""
    path = Path(path)
    out = LoadedData(path=path, task=task)
    detected: dict[str, int] = {}
    for line, obj in iter_raw_rows(path, columns, out.normalised):
        if isinstance(obj, Issue):
            out.errors.append(obj)
            continue
        row_task = detect_task(obj, columns)
        if row_task:
            detected.setdefault(row_task, line)
        if out.task is None:
            if row_task is None:
                out.errors.append(_unknown_format(line, obj))
                continue
            out.task = row_task
        elif task is None and row_task and row_task != out.task:
            out.errors.append(
                Issue(
                    line,
                    "mixed_formats",
                    f"Line {line} looks like {row_task} data, but the file started as {out.task} (line {detected[out.task]}).",
                    "Keep one format per file, or convert the rows.",
                )
            )
            continue
        try:
            out.records.append(Record(line, normalize(obj, out.task, columns)))
        except RowError as exc:
            out.errors.append(Issue(line, exc.code, f"Line {line}: {exc.message}", exc.hint))
    return out


def _unknown_format(line: int, obj: Any) -> Issue:
    if not isinstance(obj, dict):
        return Issue(
            line,
            "not_an_object",
            f"Line {line} is a JSON {type(obj).__name__}, not an object.",
            "Each line must be one JSON object {...}.",
        )
    keys = ", ".join(list(obj)[:6]) or "none"
    return Issue(
        line,
        "missing_messages",
        f"Line {line}: unrecognised fields ({keys}).",
        'Use chat {"messages": [...]}, {"prompt","completion"}, {"text","label"}, {"text","fields"} or preference pairs; or force --task.',
    )


def _check_command(path: Path | str, task: Task | None, columns: Columns) -> str:
    """The `tunesmith data check` command line that reads ``path`` the way the caller did (same task, columns)."""
    flags = [f" --task {task}"] if task else []
    for flag, value, default in (
        ("--text-field", columns.text, Columns.text),
        ("--label-field", columns.label, Columns.label),
        ("--fields-field", columns.fields, Columns.fields),
    ):
        if value != default:
            flags.append(f" {flag} {shlex.quote(value)}")
    return f"tunesmith data check {shlex.quote(str(path))}{''.join(flags)}"


def load_records_or_raise(
    path: Path | str, task: Task | None = None, columns: Columns = Columns()
) -> LoadedData:
    """``load_data`` for training/eval: refuse data with errors, listing the first few."""
    data = load_data(path, task, columns)
    if data.errors:
        first = "\n".join(f"  line {e.line}: [{e.code}] {e.message}" for e in data.errors[:5])
        more = f"\n  ... and {len(data.errors) - 5} more" if len(data.errors) > 5 else ""
        raise TunesmithError(
            f"{path} has {len(data.errors)} error(s):\n{first}{more}",
            f"Run `{_check_command(path, task, columns)}` for the full report.",
        )
    if not data.records:
        raise TunesmithError(
            f"{path} holds no usable examples.", f"Run `{_check_command(path, task, columns)}`."
        )
    return data


# --------------------------------------------------------------------------- to chat


def classification_system_prompt(labels: list[str]) -> str:
    return "Classify the message. Answer with exactly one label from: " + ", ".join(sorted(labels)) + "."


def extraction_system_prompt(keys: list[str]) -> str:
    return (
        "Extract these fields from the text and answer with one JSON object with the keys: "
        + ", ".join(keys)
        + "."
    )


def to_chat(record: dict[str, Any], task: Task, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for any supervised record (the answer is the last, assistant, message)."""
    if task == "chat":
        msgs = list(record["messages"])
        if system_prompt and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": system_prompt})
        return msgs
    if task == "completion":
        user, answer = record["prompt"], record["completion"]
    elif task == "classification":
        user, answer = record["text"], record["label"]
    elif task == "extraction":
        user, answer = record["text"], json.dumps(record["fields"], ensure_ascii=False)
    elif task == "preference":
        return list(record["prompt"]) + list(record["chosen"])
    else:
        raise TunesmithError(f"{task} data has no chat form.", "Use method: cpt for raw text.")
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    if system_prompt:
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return msgs


def default_system_prompt(records: list[dict[str, Any]], task: Task) -> str | None:
    """The generated system prompt for table tasks (the label set, the JSON keys)."""
    if task == "classification":
        return classification_system_prompt(sorted({r["label"] for r in records}))
    if task == "extraction":
        keys: list[str] = []
        for r in records:
            keys += [k for k in r["fields"] if k not in keys]
        return extraction_system_prompt(keys)
    return None
