"""One input path for every reader (tunesmith.textio): BOM, line ends, NFC, lone surrogates, huge integers,
and bounded reads that refuse FIFOs, devices and over-limit files instead of hanging or eating memory."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from datahelp import chat, check, runner, sentence, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.cli.main import app
from tunesmith.data.formats import load_data, load_records_or_raise
from tunesmith.errors import TunesmithError
from tunesmith.textio import LIMIT_ENV, InvalidJSON, parse_json, read_bounded

pytestmark = pytest.mark.unit

CASES = Path(__file__).parents[2] / "assets" / "cases"


# --------------------------------------------------------------------------- one normalisation path


def test_crlf_text_case_gives_the_same_documents_as_lf():
    """cases/crlf-text: LF, CRLF and CRLF+BOM copies of one manual read as the same one document."""
    folder = CASES / "crlf-text"
    docs = {
        f: [r["text"] for r in load_data(folder / f, task="text").rows] for f in sorted(os.listdir(folder))
    }
    lf = docs["manual_lf.txt"]
    assert len(lf) == 1 and lf[0].count("\n\n") == 2  # three paragraphs, one document
    assert docs["manual_crlf.txt"] == lf and docs["manual_crlf_bom.txt"] == lf
    bom = load_data(folder / "manual_crlf_bom.txt", task="text")
    assert bom.errors == [] and bom.normalised["bom"] == 1 and bom.normalised["crlf"] > 0


def test_crlf_text_case_reports_the_bom_in_data_check_stats(tmp_path):
    code, report, out = check(CASES / "crlf-text" / "manual_crlf_bom.txt")
    assert [e["code"] for e in report["errors"]] == ["too_few_examples"], out  # 271 bytes: that is all
    assert report["stats"]["normalised"]["bom"] == 1 and report["stats"]["normalised"]["crlf"] >= 6
    code, report, _ = check(CASES / "crlf-text" / "manual_lf.txt")
    assert "normalised" not in report["stats"]  # nothing changed: nothing reported


def _rows(n: int = 12) -> list[dict]:
    # "Cafe\u0301" is decomposed (NFD): every reader must hand training the composed "Café"
    return [
        {"text": f"Cafe\u0301 order {sentence(i, 6)}\r\nsecond line", "label": ["billing", "tech"][i % 2]}
        for i in range(n)
    ]


def test_jsonl_csv_and_text_readers_agree_on_bom_crlf_and_nfc(tmp_path):
    """A second input of our own: the same rows as JSONL (BOM, CRLF line ends, \\r\\n and NFD inside the
    strings), as CSV (BOM, CRLF, a quoted multi-line cell) and as a folder of CRLF text files."""
    rows = _rows()
    jl = tmp_path / "t.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n" for r in rows))
    cs = tmp_path / "t.csv"
    with cs.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, ["text", "label"], lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    want = [
        {"text": unicodedata.normalize("NFC", r["text"]).replace("\r\n", "\n"), "label": r["label"]}
        for r in rows
    ]
    for path in (jl, cs):
        data = load_data(path)
        assert data.errors == [] and data.rows == want, path
        assert data.normalised["bom"] == 1
    assert [r.line for r in load_data(jl).records] == list(range(1, 13))  # CRLF did not shift line numbers
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, r in enumerate(rows[:3]):
        (folder / f"{i}.txt").write_bytes(b"\xef\xbb\xbf" + r["text"].encode())
    texts = [r["text"] for r in load_data(folder).rows]
    assert texts == [w["text"] for w in want[:3]]


def test_cr_only_line_ends_split_lines_like_lf(tmp_path):
    rows = [chat(sentence(i), "ok") for i in range(10)]
    p = tmp_path / "mac.jsonl"
    p.write_bytes(b"".join(json.dumps(r).encode() + b"\r" for r in rows))
    data = load_data(p)
    assert data.errors == [] and len(data.records) == 10 and data.normalised["cr"] == 10


def test_split_copies_crlf_bom_lines_with_the_readers_line_numbers(tmp_path):
    rows = [chat(sentence(i), ["a", "b"][i % 2]) for i in range(20)]
    src = tmp_path / "all.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n" for r in rows))
    res = runner.invoke(app, ["data", "split", str(src), "--holdout", "0.25", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    out = (tmp_path / "s" / "train.jsonl").read_bytes() + (tmp_path / "s" / "holdout.jsonl").read_bytes()
    assert b"\r" not in out and not out.startswith(b"\xef\xbb\xbf")
    assert sorted(out.decode().splitlines()) == sorted(json.dumps(r) for r in rows)


# --------------------------------------------------------------------------- lone surrogates, huge integers


def test_lone_surrogate_case_is_an_error_with_and_without_a_model():
    """cases/lone-surrogate-passes-check-then-crashes: line 21 is named, with --model none and tiny."""
    path = CASES / "lone-surrogate-passes-check-then-crashes" / "lone_surrogate.jsonl"
    for model in ("none", "tiny"):
        code, report, out = check(path, model=model)
        assert code == 1, out
        assert [(e["line"], e["code"]) for e in report["errors"]] == [(21, "not_utf8")], out
        assert "unpaired surrogate \\ud800" in report["errors"][0]["message"]
    with pytest.raises(TunesmithError, match="line 21: \\[not_utf8\\]"):
        load_records_or_raise(path)  # what train, eval and the server's job runner call


def test_lone_surrogates_anywhere_name_the_field(tmp_path):
    """Our own input: a low surrogate in a preference answer, one in a key, and a valid pair (kept)."""
    good = {"prompt": "Say hi", "chosen": "hi \ud83d\ude00", "rejected": "no"}
    rows = [json.dumps(good)] * 10 + [
        json.dumps({"prompt": "Say hi", "chosen": "hi \udc00", "rejected": "no"}),
        '{"prompt": "x", "chosen": "y", "rejected": "z", "\\udfff": 1}',
    ]
    p = tmp_path / "pref.jsonl"
    p.write_text("\n".join(rows) + "\n")
    data = load_data(p)
    assert [(e.line, e.code) for e in data.errors] == [(11, "not_utf8"), (12, "not_utf8")]
    assert "chosen" in data.errors[0].message and "\\udc00" in data.errors[0].message
    assert "(key)" in data.errors[1].message
    assert data.rows[0]["chosen"][0]["content"] == "hi \U0001f600"


@pytest.mark.parametrize("command", ["check", "split", "convert"])
def test_bigint_case_is_invalid_json_at_its_line_in_every_data_command(command, tmp_path):
    """cases/bigint-json-500: a 5,000-digit integer on line 21 is `invalid_json` there, never a traceback."""
    path = CASES / "bigint-json-500" / "bigint_line.jsonl"
    if command == "check":
        code, report, out = check(path)
        assert code == 1, out
        assert [(e["line"], e["code"]) for e in report["errors"]] == [(21, "invalid_json")]
        assert "4,300 digits" in report["errors"][0]["message"]
        return
    extra = (
        ["--holdout", "0.2", "--out", str(tmp_path / "o")]
        if command == "split"
        else ["--out", str(tmp_path / "c.jsonl")]
    )
    res = runner.invoke(app, ["data", command, str(path), *extra])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "line 21: [invalid_json]" in res.output and "Traceback" not in res.output


def test_parse_json_turns_every_failure_into_one_error():
    """Our own inputs for the shared JSON parser (the server's upload check uses it through load_data)."""
    for text, fragment in [
        ('{"seed": ' + "9" * 5000 + "}", "4,300 digits"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": }', "column 7"),
        (b'{"a": "\xff"}', "UTF-8"),
    ]:
        with pytest.raises(InvalidJSON, match=fragment):
            parse_json(text)
    assert parse_json('{"n": ' + "9" * 4300 + "}")["n"] > 0  # at the limit: still a number


def test_bigint_inside_a_csv_fields_cell_is_reported_not_raised(tmp_path):
    p = tmp_path / "x.csv"
    lines = (
        ["text,fields"]
        + [f'row {i},"{{""n"": {i}}}"' for i in range(10)]
        + ['big,"{""n"": ' + "9" * 5000 + '}"']
    )
    p.write_text("\n".join(lines) + "\n")
    data = load_data(p)
    assert [(e.line, e.code) for e in data.errors] == [(12, "invalid_fields")]


# --------------------------------------------------------------------------- bounded reads


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_behind_a_symlink_is_refused_with_exit_2(device, tmp_path):
    """cases/data-check-endless-input: refused before any read (the case grew to 14 GB on /dev/zero)."""
    link = tmp_path / "zero.jsonl"
    link.symlink_to(device)
    res = runner.invoke(app, ["data", "check", str(link), "--model", "none"])
    assert res.exit_code == 2 and "is a device, not a regular file" in res.output, res.output


@pytest.mark.timeout(60)
def test_fifo_without_a_writer_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for args in (
        ["data", "check", str(fifo), "--model", "none"],
        ["data", "split", str(fifo), "--out", str(tmp_path / "s")],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "FIFO" in res.output, res.output
    with pytest.raises(TunesmithError, match="FIFO"):
        load_records_or_raise(fifo)  # train reads through here


def test_regular_files_over_the_input_limit_are_refused(tmp_path, monkeypatch):
    rows = [chat(sentence(i), "ok") for i in range(40)]
    p = write_jsonl(tmp_path / "d.jsonl", rows)
    size = p.stat().st_size
    monkeypatch.setenv(LIMIT_ENV, str(size - 1))
    res = runner.invoke(app, ["data", "check", str(p), "--model", "none"])
    assert res.exit_code == 2 and f"{size:,} bytes" in res.output and LIMIT_ENV in res.output, res.output
    monkeypatch.setenv(LIMIT_ENV, str(size))
    assert len(load_data(p).records) == 40  # exactly at the limit is fine
    # a folder of text files counts as one input: three files that fit one by one, not together
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text("x" * 100)
    monkeypatch.setenv(LIMIT_ENV, "250")
    with pytest.raises(TunesmithError, match="input limit"):
        load_data(folder)
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(TunesmithError, match="positive number of bytes"):
        load_data(p)


def test_read_bounded_stops_at_limit_plus_one_byte_on_a_sparse_huge_file(tmp_path):
    """A regular file that claims a terabyte (sparse) is refused from its size, without reading it."""
    p = tmp_path / "huge.jsonl"
    with p.open("wb") as fh:
        fh.truncate(1 << 40)
    with pytest.raises(TunesmithError, match="1,099,511,627,776 bytes") as exc:
        read_bounded(p)
    assert exc.value.exit_code == 2


def test_fifos_and_devices_inside_a_data_folder_are_skipped(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Northwind keeps invoices for seven years. " * 30)
    os.mkfifo(folder / "pipe.txt")
    (folder / "zero.txt").symlink_to("/dev/zero")
    data = load_data(folder)
    assert data.errors == [] and [r["text"][:9] for r in data.rows] == ["Northwind"]


# --------------------------------------------------------------------------- property: one path, any line ends

_texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\r\n\u0301e"), max_size=30
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(_texts, st.sampled_from(["a", "b", "c"])), min_size=1, max_size=8),
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    bom=st.booleans(),
    fmt=st.sampled_from(["jsonl", "csv"]),
)
def test_line_ends_and_bom_never_change_what_is_read(rows, ending, bom, fmt):
    """The same rows written with LF, CRLF or CR line ends, with or without a BOM, as JSONL or CSV, read the
    same as the LF JSONL copy (CSV cells and JSON strings alike get CRLF -> LF and NFC)."""
    objs = [{"text": t, "label": lab} for t, lab in rows]
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.jsonl"
        ref.write_bytes(b"".join(json.dumps(o).encode() + b"\n" for o in objs))
        p = Path(tmp) / f"x.{fmt}"
        if fmt == "jsonl":
            body = b"".join(json.dumps(o).encode() + ending for o in objs)
        else:
            buf = io.StringIO()
            csv.DictWriter(
                buf, ["text", "label"], lineterminator=ending.decode(), quoting=csv.QUOTE_ALL
            ).writerows([{"text": "text", "label": "label"}, *objs])
            body = buf.getvalue().encode()
        p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)
        want, got = load_data(ref, "classification"), load_data(p, "classification")
    assert [(e.code) for e in got.errors] == [e.code for e in want.errors]
    assert got.rows == want.rows


def test_read_bounded_reads_files_whose_size_is_not_known_up_front(tmp_path):
    """/proc files are regular but report size 0: they are read to the end, and still capped."""
    text = read_bounded("/proc/self/status")
    assert b"Name:" in text and len(text) > 100
    with pytest.raises(TunesmithError, match="growing while read"):
        read_bounded("/proc/self/status", limit=50)
    p = tmp_path / "f.jsonl"
    p.write_bytes(b"x" * 1000)
    assert read_bounded(p) == b"x" * 1000 and read_bounded(p, limit=1000) == b"x" * 1000
