"""Loaders: every supported format, and a clear per-file message for each kind of bad input."""

from __future__ import annotations

import io

import pytest

from tunesmith.rag.loaders import LoadedDocument, LoadIssue, iter_document_files, load_document

pytestmark = pytest.mark.unit


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one text line per page (Helvetica), offsets computed for a real xref."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
        )
        stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET" if text else ""
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(out.tell())
        out.write(f"{n} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypt_pdf(raw: bytes, password: str, user_password: str | None = None) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(raw)))
    writer.encrypt(
        user_password=password if user_password is None else user_password, owner_password=password
    )
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _load(tmp_path, name: str, raw: bytes) -> LoadedDocument | LoadIssue:
    return load_document(tmp_path / name, raw, name)


def test_pdf_pages_become_sections(tmp_path):
    doc = _load(
        tmp_path, "manual.pdf", make_pdf(["The widget weighs 3 kilograms.", "Warranty lasts two years."])
    )
    assert isinstance(doc, LoadedDocument)
    assert [s.location for s in doc.sections] == ["page 1", "page 2"]
    assert "3 kilograms" in doc.sections[0].text and "two years" in doc.sections[1].text


def test_encrypted_pdf_needs_a_password_message(tmp_path):
    issue = _load(tmp_path, "secret.pdf", encrypt_pdf(make_pdf(["Top secret plans."]), "hunter2"))
    assert isinstance(issue, LoadIssue)
    assert "encrypted" in issue.message and "secret.pdf" in issue.message
    assert "decrypt" in issue.hint


def test_pdf_with_empty_user_password_is_read(tmp_path):
    doc = _load(
        tmp_path, "owner-only.pdf", encrypt_pdf(make_pdf(["Readable text."]), "owner", user_password="")
    )
    assert isinstance(doc, LoadedDocument) and "Readable text." in doc.sections[0].text


def test_broken_and_textless_pdfs_are_reported(tmp_path):
    broken = _load(tmp_path, "broken.pdf", b"%PDF-1.4\nthis is not really a pdf at all\n")
    assert isinstance(broken, LoadIssue) and "unreadable PDF" in broken.message
    scanned = _load(tmp_path, "scan.pdf", make_pdf([""]))
    assert (
        isinstance(scanned, LoadIssue) and "no extractable text" in scanned.message and "OCR" in scanned.hint
    )


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html", "a.jsonl", "a.csv", "a.pdf"])
def test_empty_files_are_reported_for_every_format(tmp_path, name):
    issue = _load(tmp_path, name, b"  \n\n")
    assert isinstance(issue, LoadIssue) and issue.message == f"{name} is empty."


def test_binary_with_a_text_extension_is_reported(tmp_path):
    issue = _load(tmp_path, "photo.txt", bytes(range(256)) * 8)
    assert isinstance(issue, LoadIssue) and "binary" in issue.message
    latin = _load(tmp_path, "latin.md", ("caf\xe9 " * 200).encode("latin-1"))
    assert isinstance(latin, LoadIssue) and "not UTF-8" in latin.message
    # one stray byte in real text is not a reason to drop the file
    ok = _load(tmp_path, "mostly.txt", b"Fine text. " * 100 + b"\xff" + b" more.")
    assert isinstance(ok, LoadedDocument)


def test_html_keeps_headings_and_drops_scripts(tmp_path):
    html = (
        b"<html><head><title>Prices</title><style>p{}</style></head><body><script>var secret=1;</script>"
        b"<h1>Plans</h1><p>Pro costs 42 &euro;.</p><h2>Discounts</h2><p>Students pay half.</p></body></html>"
    )
    doc = _load(tmp_path, "p.html", html)
    assert doc.title == "Prices"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Plans", "Pro costs 42 \u20ac."),
        ("Plans > Discounts", "Students pay half."),
    ]
    assert all("secret" not in s.text for s in doc.sections)


def test_jsonl_rows_with_bad_lines_reported_by_line(tmp_path):
    raw = b'{"title": "Refunds", "text": "Refunds take 14 days."}\nnot json\n{"other": 1}\n{"content": "Shipping is free."}\n'
    doc = _load(tmp_path, "faq.jsonl", raw)
    assert [(s.heading, s.text, s.location) for s in doc.sections] == [
        ("Refunds", "Refunds take 14 days.", "line 1"),
        ("", "Shipping is free.", "line 4"),
    ]
    assert [i.source for i in doc.issues] == ["faq.jsonl:2", "faq.jsonl:3"]
    assert "not valid JSON" in doc.issues[0].message and "no text field" in doc.issues[1].message


def test_csv_rows_become_field_value_sections(tmp_path):
    doc = _load(tmp_path, "team.csv", b"name,role\nAlice,CEO\nBob,\n")
    assert [(s.text, s.location) for s in doc.sections] == [
        ("name: Alice\nrole: CEO", "row 2"),
        ("name: Bob", "row 3"),
    ]


def test_folder_walk_gives_relative_sources_and_skips_hidden_and_unsupported(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for p in ["a.md", "sub/b.txt", ".git/c.txt", "img.png", ".hidden.txt"]:
        (tmp_path / p).write_text("x")
    found = [s for _, s in iter_document_files([tmp_path])]
    assert found == ["a.md", "sub/b.txt"]
    assert [s for _, s in iter_document_files([tmp_path / "sub" / "b.txt"])] == ["b.txt"]
