"""Evaluation chooses metrics from what the answers are (tiny model, end to end through `tunesmith eval`):
chat rows with a closed set of answers are scored as classification (with label scoring and the short
budget), chat rows with JSON-object answers get the extraction metrics too, and colliding labels
(cases/eval-label-norm) are kept apart and every answer says how it matched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import EvalConfig
from tunesmith.data.formats import load_records_or_raise
from tunesmith.eval.metrics import classification_metrics, match_label
from tunesmith.eval.tasks import ClassificationTask, task_for
from tunesmith.results.eval import read_eval_report

pytestmark = pytest.mark.integration
CASE = Path(__file__).resolve().parents[2] / "assets" / "cases" / "eval-label-norm" / "langs.jsonl"
SYSTEM = "You route requests of a travel assistant. Answer with the intent name only."
INTENTS = ["book_flight", "cancel_booking", "weather", "play_music", "set_alarm", "restaurant", "traffic"]
PHRASES = {
    "book_flight": "fly to {} next week",
    "cancel_booking": "cancel my trip to {}",
    "weather": "is it raining in {}",
    "play_music": "play songs from {}",
    "set_alarm": "wake me up before we land in {}",
    "restaurant": "find a table for two in {}",
    "traffic": "how busy is the road to {}",
}
CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Accra", "Perth", "Quito", "Bern", "Hanoi", "Dakar", "Riga", "Cork"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _chat(user: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }


def _eval(args: list[str]):
    return CliRunner().invoke(app, ["eval", *args], catch_exceptions=False)


def test_chat_intents_are_scored_as_classification(tiny_model_dir, tmp_path):
    rows = [_chat(PHRASES[i].format(c), i) for c in CITIES for i in INTENTS]  # 84 rows, 7 labels
    train, hold = _write(tmp_path / "train.jsonl", rows[:70]), _write(tmp_path / "hold.jsonl", rows[70:])
    out = tmp_path / "rep"
    res = _eval(["--data", str(hold), "--train", str(train), "--model", str(tiny_model_dir), "--out", str(out),
                 "--baselines", "zero-shot,few-shot", "--max-examples", "6", "--require", "base:few-shot.accuracy>=0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # the CLI says why these metrics (wrapped at 80 columns: compare with the line breaks as spaces)
    assert "closed set of 7" in " ".join(res.output.split())
    rep = read_eval_report(out)
    assert rep.task == "chat" and rep.labels == sorted(INTENTS)
    assert rep.applied is not None and rep.applied.families[:2] == ["classification", "label_scoring"]
    assert "closed set of 7" in rep.applied.reason and rep.headline[0] == "accuracy"
    for cand in rep.candidates.values():
        for key in ("accuracy", "macro_f1", "invalid_rate", "label_scoring.accuracy", "token_f1"):
            assert cand.metric(key) is not None, key
        assert cand.metric("label_scoring.invalid_rate") == 0.0  # label scoring cannot answer off the set
        assert sum(cand.matches.values()) == 6
        budget = cand.metric("max_new_tokens")
        assert budget is not None and budget < 128  # the short budget, not eval.max_new_tokens
        assert cand.metric("mean_completion_tokens") <= budget
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {"base:zero-shot", "base:few-shot"} == set(preds[0]["match"])
    # the accuracy agrees with the saved answers, recomputed independently
    for name, cand in rep.candidates.items():
        golds = [p["reference"] for p in preds]
        recomputed = classification_metrics(
            golds, [match_label(p[name], rep.labels) for p in preds], rep.labels
        )
        assert cand.metric("accuracy") == pytest.approx(recomputed["accuracy"])


def test_chat_json_answers_get_extraction_metrics(tiny_model_dir, tmp_path):
    rows = [
        _chat(
            f"Invoice {n} from {c} over {n * 7}.50 EUR",
            json.dumps({"invoice": str(n), "city": c, "amount": n * 7.5}),
        )
        for n, c in enumerate(CITIES, start=3)
    ]
    hold = _write(tmp_path / "hold.jsonl", rows)
    out = tmp_path / "rep"
    res = _eval(["--data", str(hold), "--model", str(tiny_model_dir), "--out", str(out),
                 "--baselines", "zero-shot", "--max-examples", "4", "--max-new-tokens", "16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = read_eval_report(out)
    assert rep.applied is not None and rep.applied.families == ["extraction", "text"]
    assert "parse as JSON objects" in rep.applied.reason
    m = rep.candidates["base:zero-shot"]
    for key in ("valid_json_rate", "exact_match", "field_f1", "token_f1", "rouge_l", "text_exact_match"):
        assert m.metric(key) is not None, key
    assert set(m.metrics["per_field"]) >= {"invoice", "city", "amount"}
    assert rep.headline[:2] == ["exact_match", "field_f1"]


def test_free_text_chat_keeps_the_text_metrics():
    rows = load_records_or_raise(Path(__file__).resolve().parents[2] / "assets" / "data" / "chat.jsonl").rows
    task = task_for("chat", rows)
    assert task.applied.families == ["text"] and "free-text" in task.applied.reason and not task.labels


def test_label_case_perfect_answers_score_one_through_the_task():
    """cases/eval-label-norm: the answers a perfect model gives (== gold) score 1.0, all matched exactly."""
    rows = load_records_or_raise(CASE).rows
    task = task_for("classification", rows)
    assert isinstance(task, ClassificationTask) and task.labels == ["C", "C#", "C++"]
    scored = task.score(rows, [r["label"] for r in rows], EvalConfig())
    assert scored.metrics["accuracy"] == 1.0 and scored.metrics["macro_f1"] == 1.0
    assert {m.how for m in scored.matches} == {"exact"}
    assert all(task.correct(r, r["label"]) for r in rows)
    assert task.answer_key("C++") != task.answer_key("C") != task.answer_key("C#")


def test_label_case_end_to_end_records_how_answers_matched(tiny_model_dir, tmp_path):
    out = tmp_path / "rep"
    res = _eval(["--data", str(CASE), "--train", str(CASE), "--model", str(tiny_model_dir), "--out", str(out),
                 "--baselines", "zero-shot", "--max-examples", "6"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = read_eval_report(out)
    cand = rep.candidates["base:zero-shot"]
    assert rep.labels == ["C", "C#", "C++"] and sum(cand.matches.values()) == 6
    assert "matched exact" in cand.scored_by
    assert cand.metric("label_scoring.accuracy") is not None  # three distinct labels scored, none merged
    assert len(cand.metrics["label_scoring"]["per_label"]) == 3
    html = (out / "report.html").read_text()
    assert "How answers matched a label" in html
