"""Every grader type on hand-computed cases (issue 14, acceptance 1); the python grader's limits are in
test_graders_python.py."""

from __future__ import annotations

import json

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.graders import load_grader
from tunesmith.graders.judge import parse_label, parse_score, parse_verdict
from tunesmith.graders.template import render

pytestmark = pytest.mark.unit

OUT = "{{sample.output_text}}"
REF = "{{item.reference}}"


def check(op: str) -> object:
    return load_grader({"type": "string_check", "name": op, "input": OUT, "reference": REF, "operation": op})


@pytest.mark.parametrize(
    ("op", "answer", "reference", "score"),
    [
        ("eq", "billing", "billing", 1.0),
        ("eq", "Billing", "billing", 0.0),
        ("ne", "Billing", "billing", 1.0),
        ("ne", "billing", "billing", 0.0),
        ("like", "It goes to billing.", "billing", 1.0),
        ("like", "It goes to Billing.", "billing", 0.0),
        ("ilike", "It goes to BILLING.", "billing", 1.0),
        ("ilike", "It goes to accounts.", "billing", 0.0),
    ],
)
def test_string_check_operations(op: str, answer: str, reference: str, score: float) -> None:
    g = check(op)
    assert g.grade({"output_text": answer}, {"reference": reference}) == score
    assert g.evaluate([answer], [{"reference": reference}])[0].passed is (score == 1.0)


def similar(metric: str, **kw: object) -> object:
    return load_grader(
        {
            "type": "text_similarity",
            "name": metric,
            "input": OUT,
            "reference": REF,
            "evaluation_metric": metric,
            **kw,
        }
    )


def test_text_similarity_rouge_by_hand() -> None:
    # "the cat sat on the mat" vs "the cat sat on a mat": 5 of 6 unigrams shared each way (the twice in the
    # answer, once in the reference) -> P = R = F = 5/6; bigrams: the cat, cat sat, sat on shared, 3 of 5 -> 0.6;
    # longest common subsequence "the cat sat on mat" = 5 tokens -> 5/6.
    ans, item = "the cat sat on the mat", {"reference": "the cat sat on a mat"}
    assert similar("rouge_1").grade(ans, item) == pytest.approx(5 / 6)
    assert similar("rouge_2").grade(ans, item) == pytest.approx(0.6)
    assert similar("rouge_l").grade(ans, item) == pytest.approx(5 / 6)
    assert similar("rouge_5").grade(ans, item) == pytest.approx(0.0)  # no 5-gram shared


def test_text_similarity_bleu_gleu_fuzzy_by_hand() -> None:
    same = {"reference": "refunds take five business days"}
    for metric in ("bleu", "gleu", "fuzzy_match", "rouge_l"):
        assert similar(metric).grade("refunds take five business days", same) == pytest.approx(1.0), metric
    # GLEU = min(n-gram precision, recall) over n = 1..4: "hello world" vs "goodbye world" share 1 of 3 n-grams
    assert similar("gleu").grade("hello world", {"reference": "goodbye world"}) == pytest.approx(1 / 3)
    # fuzzy (rapidfuzz WRatio after lower-casing and stripping punctuation): case and punctuation do not count
    assert similar("fuzzy_match").grade("Refunds take five business days!", same) == pytest.approx(1.0)
    assert similar("bleu").grade("completely unrelated words here", same) < 0.1


def test_text_similarity_pass_threshold_and_meteor_refused() -> None:
    g = similar("rouge_1", pass_threshold=0.9)
    grade = g.evaluate(["the cat sat on the mat"], [{"reference": "the cat sat on a mat"}])[0]
    assert grade.score == pytest.approx(5 / 6) and grade.passed is False
    with pytest.raises(TunesmithError, match="meteor.*network"):
        similar("meteor")


def test_multi_formula_by_hand() -> None:
    g = load_grader(
        {
            "type": "multi",
            "name": "combined",
            "graders": {
                "exact": {
                    "type": "string_check",
                    "name": "exact",
                    "input": OUT,
                    "reference": REF,
                    "operation": "eq",
                },
                "overlap": {
                    "type": "text_similarity",
                    "name": "overlap",
                    "input": OUT,
                    "reference": REF,
                    "evaluation_metric": "rouge_1",
                },
            },
            "calculate_output": "0.5 * exact + 0.5 * overlap^2 + min(exact, overlap) - floor(0.9)",
        }
    )
    # exact = 0, overlap = 5/6 -> 0.5 * 0 + 0.5 * 25/36 + 0 - 0 (^ is power, binding tighter than *)
    assert g.grade("the cat sat on the mat", {"reference": "the cat sat on a mat"}) == pytest.approx(25 / 72)
    assert g.grade("x", {"reference": "x"}) == pytest.approx(0.5 + 0.5 + 1.0)


@pytest.mark.parametrize(
    ("formula", "why"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("exact.real", "not allowed"),
        ("exact if exact else 1", "not allowed"),
        ("exact + other", "'other' is not one of the graders"),
        ("exact +", "not a formula"),
    ],
)
def test_multi_formula_refuses_anything_but_arithmetic(formula: str, why: str) -> None:
    spec = {
        "type": "multi",
        "name": "m",
        "graders": {
            "exact": {
                "type": "string_check",
                "name": "exact",
                "input": OUT,
                "reference": REF,
                "operation": "eq",
            }
        },
        "calculate_output": formula,
    }
    with pytest.raises(TunesmithError, match=why):
        load_grader(spec)


def test_multi_division_by_zero_is_a_clear_error() -> None:
    spec = {
        "type": "multi",
        "name": "m",
        "graders": {
            "exact": {
                "type": "string_check",
                "name": "exact",
                "input": OUT,
                "reference": REF,
                "operation": "eq",
            }
        },
        "calculate_output": "1 / exact",
    }
    with pytest.raises(TunesmithError, match="failed for scores"):
        load_grader(spec).grade("a", {"reference": "b"})


def test_templates_follow_openai_namespaces() -> None:
    ctx = {
        "sample": {"output_text": "hi", "output_json": {"city": "Oslo"}},
        "item": {"reference": "x", "tags": ["a", "b"]},
    }
    assert (
        render("{{ sample.output_text }}|{{item.reference}}|{{sample.output_json.city}}|{{item.tags.1}}", ctx)
        == "hi|x|Oslo|b"
    )
    assert render("{{item.tags}}", ctx) == json.dumps(["a", "b"])
    with pytest.raises(TunesmithError, match=r"names 'answer'.*it has: reference, tags"):
        render("{{item.answer}}", ctx, grader="g")


def test_a_json_answer_gets_output_json() -> None:
    g = load_grader(
        {
            "type": "string_check",
            "name": "city",
            "input": "{{sample.output_json.city}}",
            "reference": "Oslo",
            "operation": "eq",
        }
    )
    assert g.grade('{"city": "Oslo"}', {}) == 1.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "string_check", "name": "x", "input": OUT, "reference": REF, "operation": "contains"},
            "operation",
        ),
        (
            {
                "type": "string_check",
                "name": "x",
                "input": OUT,
                "reference": REF,
                "operation": "eq",
                "refrence": 1,
            },
            "refrence.*unknown key",
        ),
        ({"type": "regex", "name": "x"}, "unknown grader type 'regex'"),
        (
            {
                "type": "label_model",
                "name": "x",
                "input": [{"role": "user", "content": "?"}],
                "labels": ["a", "b"],
                "passing_labels": ["c"],
            },
            r"passing_labels \['c'\]",
        ),
        (
            {
                "type": "score_model",
                "name": "x",
                "input": [{"role": "user", "content": "?"}],
                "range": [1, 1],
            },
            "low < high",
        ),
        ({"type": "python", "name": "x", "source": "def grade(s, i):\n  return (\n"}, "syntax error on line"),
        ({"type": "python", "name": "x", "source": "def score(s, i):\n  return 1\n"}, "no function grade"),
    ],
)
def test_bad_grader_files_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(TunesmithError, match=message):
        load_grader(spec)


def test_grader_file_errors(tmp_path) -> None:
    f = tmp_path / "g.json"
    f.write_text('{"type": "string_check",\n "name": }')
    with pytest.raises(TunesmithError, match=r"g.json: not valid JSON \(line 2"):
        load_grader(f)
    with pytest.raises(TunesmithError, match="does not exist"):
        load_grader(tmp_path / "missing.json")


def test_judge_reply_parsing() -> None:
    assert parse_score('{"steps": [], "result": 0.75}', 0, 1) == 0.75
    assert parse_score("Score: 7 out of 10", 1, 10) == 7.0
    assert parse_score("I'd say 12", 1, 10) is None
    assert parse_score("no idea", 0, 1) is None
    assert parse_label("correct", ["correct", "incorrect"]) == "correct"
    assert parse_label('{"result": "incorrect"}', ["correct", "incorrect"]) == "incorrect"
    assert parse_label("hmm", ["correct", "incorrect"]) is None
    assert [parse_verdict(r) for r in ("A", "b.", "Answer B is better", "Tie", "both are equal", "?")] == [
        "A",
        "B",
        "B",
        "tie",
        "tie",
        None,
    ]


def test_judge_without_endpoint_or_local_model_says_what_to_do(monkeypatch) -> None:
    for var in ("TUNESMITH_JUDGE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    spec = {
        "type": "score_model",
        "name": "tone",
        "model": "gpt-4o",
        "input": [{"role": "user", "content": OUT}],
    }
    with pytest.raises(TunesmithError, match="--judge-url"):
        load_grader(spec)
