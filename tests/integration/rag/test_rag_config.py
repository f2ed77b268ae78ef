"""`tunesmith rag` honours the project config's rag: section (--config, else ./tunesmith.yaml, plus
--override KEY=VALUE): flags win over the config, the config wins over the defaults, and a missing
DOCS/index in both is one usage error (exit 2)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from rag_helpers import write_corpus
from typer.testing import CliRunner

from tunesmith.cli.main import app, main
from tunesmith.rag import open_index, retrieve
from tunesmith.rag.index import index_documents

pytestmark = pytest.mark.integration

QUESTION = "What is the capital city of Freedonia?"


def _write_config(path: Path, **rag: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"rag": rag}))
    return path


def _chunk_settings(index_dir: Path) -> set[str]:
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        return {row[0] for row in db.execute("SELECT settings FROM docs")}


def _rag(*args: str) -> dict | list:
    res = CliRunner().invoke(app, ["rag", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """The real entry point, so a usage error is rendered (and its exit code returned) as a user sees it."""
    monkeypatch.setattr(sys, "argv", ["tunesmith", "rag", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out + err


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rag-config")
    index_documents([write_corpus(root / "docs")], root / "kb.index")
    return root / "kb.index"


def test_index_takes_docs_index_and_chunking_from_the_config_and_flags_win(tmp_path, monkeypatch):
    write_corpus(tmp_path / "docs")
    _write_config(
        tmp_path / "tunesmith.yaml", docs=["docs"], index="kb.index", chunk_tokens=32, chunk_overlap=4
    )
    monkeypatch.chdir(tmp_path)
    report = _rag("index")  # no DOCS, no --index: both from ./tunesmith.yaml
    assert report["n_docs"] == 6 and report["n_chunks"] > 6  # 32-token chunks split guide.md
    assert _chunk_settings(tmp_path / "kb.index") == {'{"chunk_tokens": 32, "chunk_overlap": 4}'}

    report = _rag("index", "--chunk-tokens", "256", "--chunk-overlap", "16")  # flags beat the config
    assert report["updated"] == 6 and report["n_chunks"] == 6
    assert _chunk_settings(tmp_path / "kb.index") == {'{"chunk_tokens": 256, "chunk_overlap": 16}'}

    other = write_corpus(tmp_path / "other", {"only.txt": "Only this file is indexed here."})
    report = _rag("index", str(other), "--index", str(tmp_path / "other.index"),
                  "--override", "rag.chunk_tokens=64")  # fmt: skip
    assert report["n_docs"] == 1 and _chunk_settings(tmp_path / "other.index") == {
        '{"chunk_tokens": 64, "chunk_overlap": 4}'
    }


def test_an_explicit_config_resolves_its_paths_against_its_own_folder(tmp_path, monkeypatch):
    write_corpus(tmp_path / "project" / "docs")
    config = _write_config(
        tmp_path / "project" / "rag.yaml", docs=["docs"], index="kb.index", k=2, mode="dense"
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _rag("index", "--config", str(config))["n_docs"] == 6
    assert (tmp_path / "project" / "kb.index" / "index.sqlite").exists()
    passages = _rag("query", QUESTION, "--config", str(config))
    assert len(passages) == 2 and passages[0]["source"] == "geo/freedonia.txt"


def test_query_takes_index_k_and_mode_from_the_config_and_flags_win(index_dir, tmp_path, monkeypatch):
    _write_config(tmp_path / "tunesmith.yaml", index=str(index_dir), k=2, mode="dense")
    monkeypatch.chdir(tmp_path)
    index = open_index(index_dir)

    def same(passages: list[dict], k: int, mode: str) -> bool:
        want = retrieve(index, QUESTION, k=k, mode=mode)  # type: ignore[arg-type]
        return [(p["chunk_id"], p["score"]) for p in passages] == [(p.chunk_id, p.score) for p in want]

    from_config = _rag("query", QUESTION)  # only the question: the index is rag.index
    assert len(from_config) == 2 and same(from_config, 2, "dense")
    assert not same(from_config, 2, "hybrid")  # the modes' scores differ, so `same` can tell them apart
    flags = _rag("query", str(index_dir), QUESTION, "-k", "3", "--mode", "hybrid")
    assert len(flags) == 3 and same(flags, 3, "hybrid")
    overridden = _rag("query", QUESTION, "--override", "rag.k=1", "--override", "rag.mode=bm25")
    assert len(overridden) == 1 and same(overridden, 1, "bm25")
    defaults = _rag(
        "query", str(index_dir), QUESTION, "--config", str(_write_config(tmp_path / "empty.yaml"))
    )
    assert len(defaults) == 5 and same(defaults, 5, "hybrid")  # a config without rag: -> the defaults


def test_ask_and_eval_take_k_and_mode_from_the_config(index_dir, tiny_model_dir, tmp_path, monkeypatch):
    _write_config(tmp_path / "tunesmith.yaml", index=str(index_dir), k=2, mode="dense")
    monkeypatch.chdir(tmp_path)
    model = ["--model", str(tiny_model_dir)]
    out = _rag("ask", QUESTION, *model, "--max-tokens", "4")
    want = retrieve(open_index(index_dir), QUESTION, k=2, mode="dense")
    assert [p["chunk_id"] for p in out["passages"]] == [p.chunk_id for p in want]
    assert [p["score"] for p in out["passages"]] == [p.score for p in want]
    assert len(_rag("ask", QUESTION, *model, "--max-tokens", "4", "-k", "3")["passages"]) == 3

    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": QUESTION, "answer": "Fredville", "source": "geo/freedonia.txt"}) + "\n"
    )
    runner = CliRunner()
    res = runner.invoke(app, ["rag", "eval", "--qa", str(qa), "--out", str(tmp_path / "ev"), *model])
    assert res.exit_code == 0, res.output
    answers = json.loads((tmp_path / "ev" / "rag_eval.json").read_text())["answers"]
    assert (answers["k"], answers["mode"]) == (2, "dense")
    res = runner.invoke(app, ["rag", "eval", str(index_dir), "--qa", str(qa), "--out", str(tmp_path / "ev2"),
                              *model, "--answer-k", "3", "--answer-mode", "bm25"])  # fmt: skip
    assert res.exit_code == 0, res.output
    answers = json.loads((tmp_path / "ev2" / "rag_eval.json").read_text())["answers"]
    assert (answers["k"], answers["mode"]) == (3, "bm25")


def test_missing_docs_or_index_is_a_usage_error(index_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no tunesmith.yaml here
    docs = write_corpus(tmp_path / "docs")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    cases = [
        (["index", "--index", str(tmp_path / "i")], "No documents to index: pass DOCS or set rag.docs"),
        (["index", str(docs)], "No index given: pass --index or set rag.index"),
        (["query", QUESTION], "No index given: pass INDEX before the question or set rag.index"),
        (["ask", QUESTION], "No index given: pass INDEX before the question or set rag.index"),
        (
            ["eval", "--qa", str(qa), "--out", str(tmp_path / "o")],
            "No index given: pass INDEX or set rag.index",
        ),
        (["query"], "Missing QUESTION"),
    ]
    for args, message in cases:
        code, text = _main(capsys, monkeypatch, *args)
        assert code == 2 and message in text and "Hint:" in text and "Traceback" not in text, (args, text)
    assert not (tmp_path / "i").exists()
    # a config with an empty rag: section behaves the same
    _write_config(tmp_path / "tunesmith.yaml", k=3)
    code, text = _main(capsys, monkeypatch, "index")
    assert code == 2 and "No documents to index" in text


def test_a_bad_rag_config_value_names_the_key(index_dir, tmp_path, monkeypatch, capsys):
    _write_config(tmp_path / "tunesmith.yaml", index=str(index_dir), mode="fuzzy")
    monkeypatch.chdir(tmp_path)
    code, text = _main(capsys, monkeypatch, "query", QUESTION)
    assert code == 1 and "rag.mode" in text and "Traceback" not in text, text
    _write_config(tmp_path / "tunesmith.yaml", index=str(index_dir))
    code, text = _main(capsys, monkeypatch, "query", QUESTION, "--override", "rag.chunk_overlap=999")
    assert code == 1 and "rag.chunk_overlap must be smaller than rag.chunk_tokens" in text, text


def test_help_names_the_config_defaults():
    for command in ("index", "query", "ask", "eval"):
        res = CliRunner().invoke(app, ["rag", command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "--config" in res.output and "--override" in res.output, command
    res = CliRunner().invoke(app, ["rag", "query", "--help"], env={"COLUMNS": "200"})
    assert "Default: rag.k (5)" in res.output and "Default: rag.mode (hybrid)" in res.output
