"""Document loaders: .txt, .md, .html, .pdf, .jsonl, .csv into sections (heading + text + location).

A loader never raises for a bad file: it returns a ``LoadIssue`` naming the file, the problem and the fix,
so one broken file among 10,000 is reported and the rest are still indexed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUPPORTED_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl", ".csv"}
# Fields that hold the body / the title of a JSONL document row, in order of preference.
JSONL_TEXT_FIELDS = ("text", "content", "body", "document", "passage", "page_content")
JSONL_TITLE_FIELDS = ("title", "heading", "name", "id")
# A text file with more than this share of undecodable bytes is treated as binary, not as text with typos.
MAX_BAD_BYTE_RATIO = 0.01


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (``"Guide > Install"``); ``location`` is "line 12", "page 3"..."""

    heading: str
    text: str
    location: str


@dataclass(frozen=True)
class LoadIssue:
    """Why one file (or one line of it) was not indexed, and what to do about it."""

    source: str
    message: str
    hint: str


@dataclass(frozen=True)
class LoadedDocument:
    title: str
    sections: list[Section]
    issues: list[LoadIssue]  # per-line problems inside an otherwise readable file


def iter_document_files(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """``(file, source)`` for every supported file under ``paths``; ``source`` is the path relative to the
    folder that was given (or the file name for a file argument), which is what QA sets refer to."""
    for root in paths:
        root = Path(root)
        if root.is_file():
            yield root, root.name
            continue
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not f.is_file():
                continue  # hidden files and folders (.git, .DS_Store) are never documents
            if f.suffix.lower() in SUPPORTED_SUFFIXES:
                yield f, rel.as_posix()


def load_document(path: Path, raw: bytes, source: str) -> LoadedDocument | LoadIssue:
    """Parse one file's bytes. Returns a LoadIssue for empty, binary, encrypted or unparsable files."""
    suffix = path.suffix.lower()
    if not raw.strip():
        return LoadIssue(source, f"{source} is empty.", "Remove it or add content; it was skipped.")
    if suffix == ".pdf":
        return _load_pdf(raw, source)
    text = _decode_text(raw, source)
    if isinstance(text, LoadIssue):
        return text
    if suffix in (".md", ".markdown"):
        return _load_markdown(text, source)
    if suffix in (".html", ".htm"):
        return _load_html(text, source)
    if suffix == ".jsonl":
        return _load_jsonl(text, source)
    if suffix == ".csv":
        return _load_csv(text, source)
    return LoadedDocument(Path(source).stem, [Section("", text, "line 1")], [])


def _decode_text(raw: bytes, source: str) -> str | LoadIssue:
    if b"\x00" in raw[:65536]:
        return LoadIssue(
            source,
            f"{source} looks like a binary file (it contains NUL bytes), not text.",
            "Give it the right extension or convert it to UTF-8 text; it was skipped.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad / max(len(text), 1) > MAX_BAD_BYTE_RATIO:
            return LoadIssue(
                source,
                f"{source} is not UTF-8 text (first bad byte at offset {exc.start}, {bad} bad bytes).",
                "Re-save it as UTF-8, or give binary files their real extension; it was skipped.",
            )
        return text  # a handful of stray bytes in real text: keep the text, replace the bytes


# --------------------------------------------------------------------------- markdown

_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _load_markdown(text: str, source: str) -> LoadedDocument:
    sections: list[Section] = []
    path: list[str] = []
    body: list[str] = []
    start = 1
    in_fence = False

    def flush(next_start: int) -> None:
        nonlocal body, start
        if "".join(body).strip():
            sections.append(Section(" > ".join(path), "\n".join(body).strip(), f"line {start}"))
        body, start = [], next_start

    for i, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _ATX.match(line)
        if m:
            flush(i)
            level = len(m.group(1))
            path = [*path[: level - 1], m.group(2)]
        else:
            body.append(line)
    flush(0)
    title = path[0] if path else Path(source).stem
    if not sections and path:  # headings only: keep them, they are the content
        sections.append(Section(" > ".join(path), " > ".join(path), "line 1"))
    return LoadedDocument(title, sections, [])


# --------------------------------------------------------------------------- html


class _HtmlText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.path: list[str] = []
        self.body: list[str] = []
        self.heading_level = 0
        self.heading_text: list[str] = []
        self.skip_depth = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "title":
            self.in_title = True
        if tag in self.SKIP:
            self.skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading_level, self.heading_text = int(tag[1]), []
        elif tag in self.BLOCK:
            self.body.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in self.SKIP and self.skip_depth:
            self.skip_depth -= 1
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            heading = " ".join("".join(self.heading_text).split())
            self.path = [*self.path[: self.heading_level - 1], heading]
            self.heading_level = 0
        elif tag in self.BLOCK:
            self.body.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.skip_depth:
            return
        (self.heading_text if self.heading_level else self.body).append(data)

    def _flush(self) -> None:
        lines = [" ".join(line.split()) for line in "".join(self.body).split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            self.sections.append(Section(" > ".join(self.path), text, f"section {len(self.sections) + 1}"))
        self.body = []


def _load_html(text: str, source: str) -> LoadedDocument | LoadIssue:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    parser._flush()
    if not parser.sections:
        return LoadIssue(
            source, f"{source} has no visible text.", "Check that it is a real page; it was skipped."
        )
    title = " ".join("".join(parser.title).split()) or Path(source).stem
    return LoadedDocument(title, parser.sections, [])


# --------------------------------------------------------------------------- pdf


def _load_pdf(raw: bytes, source: str) -> LoadedDocument | LoadIssue:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every malformed xref: we report once
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            return LoadIssue(
                source,
                f"{source} is an encrypted PDF that needs a password.",
                "Save an unencrypted copy (e.g. `qpdf --decrypt in.pdf out.pdf`); it was skipped.",
            )
        sections = []
        for i, page in enumerate(reader.pages, start=1):
            page_text = page.extract_text() or ""
            if page_text.strip():
                sections.append(Section("", page_text.strip(), f"page {i}"))
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
        kind = "encrypted" if "crypt" in str(exc).lower() else "unreadable"
        reason = exc if isinstance(exc, PdfReadError) else f"{type(exc).__name__}: {exc}"
        return LoadIssue(
            source,
            f"{source} is an {kind} PDF ({reason}).",
            "Re-export or repair it (e.g. `qpdf in.pdf out.pdf`); it was skipped.",
        )
    if not sections:
        return LoadIssue(
            source,
            f"{source} has no extractable text (a scanned PDF?).",
            "Run OCR on it first (e.g. `ocrmypdf`); it was skipped.",
        )
    title = (reader.metadata.title if reader.metadata and reader.metadata.title else None) or Path(
        source
    ).stem
    return LoadedDocument(str(title), sections, [])


# --------------------------------------------------------------------------- jsonl / csv


def _load_jsonl(text: str, source: str) -> LoadedDocument | LoadIssue:
    sections, issues = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            issues.append(
                LoadIssue(
                    f"{source}:{i}",
                    f"{source} line {i} is not valid JSON: {exc.msg}.",
                    "Fix or remove the line.",
                )
            )
            continue
        body = next(
            (obj[f] for f in JSONL_TEXT_FIELDS if isinstance(obj, dict) and isinstance(obj.get(f), str)), None
        )
        if body is None or not body.strip():
            issues.append(
                LoadIssue(
                    f"{source}:{i}",
                    f"{source} line {i} has no text field (looked for {', '.join(JSONL_TEXT_FIELDS)}).",
                    "Put the document text in a 'text' field.",
                )
            )
            continue
        title = next((str(obj[f]) for f in JSONL_TITLE_FIELDS if obj.get(f) not in (None, "")), "")
        sections.append(Section(title, body.strip(), f"line {i}"))
    if not sections:
        first = issues[0].message if issues else "no rows"
        return LoadIssue(
            source,
            f"{source} has no usable rows ({first}).",
            "Each line must be a JSON object with a 'text' field.",
        )
    return LoadedDocument(Path(source).stem, sections, issues)


def _load_csv(text: str, source: str) -> LoadedDocument | LoadIssue:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        sections = []
        for row in reader:
            parts = [f"{k}: {v.strip()}" for k, v in row.items() if k and isinstance(v, str) and v.strip()]
            if parts:
                sections.append(Section("", "\n".join(parts), f"row {reader.line_num}"))
    except csv.Error as exc:
        return LoadIssue(
            source,
            f"{source} is not a valid CSV file (line {reader.line_num}: {exc}).",
            "Fix the quoting on that line.",
        )
    if not header or not sections:
        return LoadIssue(source, f"{source} has a header but no rows.", "Add rows; it was skipped.")
    return LoadedDocument(Path(source).stem, sections, [])
