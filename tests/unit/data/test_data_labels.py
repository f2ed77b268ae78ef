"""Label matching never merges two labels; ``data check`` warns when labels collide (cases/eval-label-norm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.data.labels import closed_label_set, collisions, match
from tunesmith.eval.metrics import classification_metrics, match_counts, match_label, match_labels

pytestmark = pytest.mark.unit
CASE = Path(__file__).resolve().parents[2] / "assets" / "cases" / "eval-label-norm" / "langs.jsonl"

LABEL_SETS = {
    "sentiment": ["-1", "0", "1"],
    "languages": ["C", "C++", "C#"],
    "grades": ["A", "A+", "A-"],
}


@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_perfect_answers_score_one_on_colliding_label_sets(name):
    """The case's check_labels.py: answers equal to the gold label score 1.0 (was 0.67 / 0.33 / 0.33)."""
    labels = LABEL_SETS[name]
    golds = labels * 2
    m = classification_metrics(golds, [match_label(g, labels) for g in golds], labels)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["invalid_rate"] == 0.0
    assert match_counts(match_labels(golds, labels)) == {
        "exact": 6,
        "normalised": 0,
        "in_answer": 0,
        "none": 0,
    }


def test_normalised_match_only_where_unambiguous():
    langs = LABEL_SETS["languages"]
    assert match("c++", langs).label == match("C++ ", langs).label == match("C++.", langs).label == "C++"
    assert match("C++ ", langs).how == "exact"  # surrounding whitespace is not a normalisation
    assert match("c++", langs).label == "C++" and match("c++", langs).how == "normalised"
    assert match('"C#"', langs).label == "C#"
    assert match("c", langs).label == "C"  # case-folded: only C folds to "c"
    # punctuation-free, "-C-" would be C, C++ and C#: no guess
    assert match("-C-", langs).label is None and match("-C-", langs).how == "none"
    assert match("The language is C++", langs).label == "C++"
    assert match("The language is C++", langs).how == "in_answer"
    assert match("It is C, or maybe C#", langs).label is None  # two labels named
    assert match("C+", langs).how == "none"  # "+" is not an edge: no label is named
    assert match("It is a billing-related question", ["billing", "technical"]).label == "billing"
    assert match("Grade: A-, well done", LABEL_SETS["grades"]).label == "A-"  # not A
    assert match("it is non-billing", ["billing", "technical"]).how == "none"
    assert match("a refund request", ["refund", "refund request"]).label == "refund request"
    sentiment = LABEL_SETS["sentiment"]
    assert match("1.", sentiment).label == "1"
    assert match("Sentiment: -1", sentiment).label == "-1"
    assert match("A-!", LABEL_SETS["grades"]).label == "A-"
    # the old behaviour stays for ordinary labels
    labels = ["billing", "escalation", "refund", "refund_request"]
    assert match("Billing!", labels).label == "billing" and match("Billing!", labels).how == "normalised"
    assert match("this is a refund_request", labels).label == "refund_request"
    assert match("bill", labels).how == "none"


def test_collisions_and_closed_sets():
    assert collisions(["C", "C++", "C#", "Rust"]) == [["C", "C#", "C++"]]
    assert collisions(["-1", "0", "1"]) == [["-1", "1"]]
    assert collisions(["billing", "refund"]) == []
    assert closed_label_set(["yes", "no"] * 6) == ["no", "yes"]
    assert closed_label_set(["yes", "no"] * 4) is None  # fewer than 10 answers
    assert closed_label_set([f"answer number {i}" for i in range(12)]) is None  # nothing repeats
    assert closed_label_set(["a fairly long free text answer here"] * 12) is None  # more than 3 words


def test_data_check_warns_on_the_case_file():
    """`data check langs.jsonl --model none --json -` names the collision (was silent, ok: true)."""
    res = CliRunner().invoke(app, ["data", "check", str(CASE), "--model", "none", "--json", "-"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    found = [w for w in report["warnings"] if w["code"] == "label_collision"]
    assert len(found) == 1
    assert "C / C# / C++" in found[0]["message"]
    assert found[0]["lines"] == list(range(1, 13))


def test_data_check_is_quiet_on_distinct_labels(tmp_path):
    rows = [{"text": f"ticket {i} about things", "label": ["billing", "refund"][i % 2]} for i in range(12)]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["data", "check", str(f), "--model", "none", "--json", "-"])
    report = json.loads(res.output[res.output.index("{") :])
    assert "label_collision" not in {w["code"] for w in report["warnings"]}
