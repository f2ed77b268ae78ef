"""Every metric on small cases computed by hand (the expected numbers are worked out in the comments)."""

from __future__ import annotations

import pytest

from tunesmith.eval import metrics as M

pytestmark = pytest.mark.unit


def test_normalize_and_label_matching():
    assert M.normalize('  "Billing."\n') == "billing"
    labels = ["billing", "tech_support", "escalation"]
    assert M.match_label("Billing!", labels) == "billing"
    assert M.match_label("The category is escalation.", labels) == "escalation"
    assert M.match_label("billing or escalation", labels) is None  # two labels named: invalid
    assert M.match_label("I cannot help with that", labels) is None
    assert M.match_label("bill", labels) is None  # a prefix is not the label
    assert M.match_label("refund", ["refund", "refund_request"]) == "refund"
    assert M.match_label("this is a refund_request", ["refund", "refund_request"]) == "refund_request"


def test_classification_metrics_hand_computed():
    golds = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", None, "a"]
    m = M.classification_metrics(golds, preds, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["invalid_rate"] == pytest.approx(1 / 6)
    # a: tp 2, fp 1 (the c), fn 1 -> P 2/3, R 2/3, F1 2/3
    assert m["per_label"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    # b: tp 1, fp 1, fn 1 (the invalid) -> 1/2, 1/2, 1/2 ; c: tp 0 -> 0
    assert m["per_label"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_label"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert m["confusion"]["columns"] == ["a", "b", "c", "(invalid)"]
    assert m["confusion"]["matrix"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]


def test_extraction_metrics_hand_computed():
    golds = [{"name": "Ann", "amount": 12.5}, {"name": "Bo", "amount": 3}, {"name": "Cy", "amount": 7}]
    answers = [
        'Here you go: {"name": "ann", "amount": "12.50"}',  # both right after normalising: exact
        '```json\n{"name": "Bo", "amount": 4, "city": "Oslo"}\n```',  # name right, amount wrong, extra city
        "no idea",  # not JSON
    ]
    m = M.extraction_metrics(golds, answers)
    assert m["valid_json_rate"] == pytest.approx(2 / 3)
    assert m["exact_match"] == pytest.approx(1 / 3)
    # name: tp 2, fp 0, fn 1 -> P 1, R 2/3 ; amount: tp 1, fp 1, fn 2 -> P 1/2, R 1/3 ; city: fp 1
    assert m["per_field"]["name"]["precision"] == 1.0 and m["per_field"]["name"]["recall"] == pytest.approx(
        2 / 3
    )
    assert m["per_field"]["amount"]["precision"] == pytest.approx(0.5)
    assert m["per_field"]["amount"]["recall"] == pytest.approx(1 / 3)
    assert m["per_field"]["city"]["precision"] == 0.0
    # micro: tp 3, fp 2, fn 3 -> P 3/5, R 1/2, F1 = 2*0.6*0.5/1.1
    assert m["field_f1"] == pytest.approx(2 * 0.6 * 0.5 / 1.1)


def test_token_f1_and_rouge_l_hand_computed():
    # pred: the cat sat ; ref: the cat sat down -> common 3, P 1, R 3/4, F1 6/7
    assert M.token_f1("The cat sat.", "the cat sat down") == pytest.approx(6 / 7)
    assert M.token_f1("dog", "cat") == 0.0
    # pred: a b c d ; ref: a c b d -> LCS 3 (a c d), P 3/4, R 3/4
    assert M.rouge_l("a b c d", "a c b d") == pytest.approx(0.75)
    assert M.rouge_l("", "x") == 0.0 and M.rouge_l("", "") == 1.0
    g = M.generation_metrics(["the cat sat down", "hello"], ["The cat sat.", "Hello!"], regex=None)
    assert g["token_f1"] == pytest.approx((6 / 7 + 1) / 2) and g["exact_match"] == pytest.approx(0.5)
    assert "format_pass_rate" not in g


def test_format_rules():
    schema = {"type": "object", "required": ["queue"], "properties": {"queue": {"type": "string"}}}
    assert M.format_check('{"queue": "billing"}', schema=schema) == []
    assert M.format_check('{"q": 1}', schema=schema) == ["json_schema"]
    assert M.format_check("Dear customer, thanks", regex=r"^Dear", max_chars=10) == ["max_length"]
    assert M.format_check("Hi", regex=r"^Dear") == ["regex"]
    g = M.generation_metrics(["x", "y"], ["Dear a", "Hello"], regex=r"^Dear", schema=None, max_chars=None)
    assert g["format_pass_rate"] == pytest.approx(0.5)


def test_consistency_latency_cost():
    assert M.consistency(
        ["billing", "tech"], [["Billing.", "billing"], ["tech", "billing"]]
    ) == pytest.approx(0.5)
    # numpy linear percentile of [10, 20, 30, 40]: p50 = 25, p95 = 30 + 0.85 * 10 = 38.5
    lat = M.latency_summary([0.01, 0.02, 0.03, 0.04])
    assert (
        lat["p50"] == pytest.approx(25)
        and lat["p95"] == pytest.approx(38.5)
        and lat["mean"] == pytest.approx(25)
    )
    # 0.36 s per request at $1/hour -> 1000 * 0.36 / 3600 = $0.10 per 1,000 requests
    assert M.cost_per_1k_requests(0.36, 100, usd_per_hour=1.0) == pytest.approx(0.1)
    assert M.cost_per_1k_requests(0.36, 150, usd_per_hour=1.0, usd_per_1k_tokens=0.002) == pytest.approx(0.3)


def test_parse_json_object_variants():
    assert M.parse_json_object('{"a": 1}') == {"a": 1}
    assert M.parse_json_object("[1, 2]") is None
    assert M.parse_json_object('prefix {"a": {"b": 2}} suffix') == {"a": {"b": 2}}
    assert M.values_equal("1,200", 1200) and not M.values_equal("yes", True)
