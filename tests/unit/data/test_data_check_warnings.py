"""Every quality warning on a crafted file, with the lines involved (CLI, --json)."""

from __future__ import annotations

import csv

import pytest
from datahelp import chat, check, codes, sentence, write_jsonl

pytestmark = pytest.mark.unit


def _base(n: int = 14) -> list[dict]:
    return [chat(sentence(i), sentence(i + 500, 8)) for i in range(n)]


def test_clean_base_has_no_warnings(tmp_path):
    code, report, _ = check(write_jsonl(tmp_path / "d.jsonl", _base()))
    assert code == 0 and report["warnings"] == []


def test_duplicate_names_the_repeats(tmp_path):
    rows = _base()
    rows.append(rows[2])
    rows.append(
        chat(rows[4]["messages"][0]["content"].upper() + " !!", rows[4]["messages"][1]["content"])
    )  # same after normalising
    code, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    assert code == 0
    assert codes(report)["duplicate"] == [15, 16]


def test_near_duplicate_groups_similar_but_not_identical(tmp_path):
    rows = _base()
    q = rows[5]["messages"][0]["content"]
    rows.append(chat(q + " please", rows[5]["messages"][1]["content"]))  # one word more
    code, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    w = codes(report)
    assert w["near_duplicate"] == [6, 15] and "duplicate" not in w


def test_contradiction_same_input_different_output(tmp_path):
    rows = _base()
    rows.append(chat(rows[7]["messages"][0]["content"], "a completely different answer here"))
    code, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    assert codes(report)["contradiction"] == [8, 15]


def test_holdout_leak_exact_and_near(tmp_path):
    rows = _base()
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    held = [chat(sentence(900 + i), sentence(1900 + i, 6)) for i in range(3)]
    held.append(rows[3])  # exact copy of train line 4
    held.append(
        chat(rows[9]["messages"][0]["content"] + " thanks", rows[9]["messages"][1]["content"])
    )  # near copy of line 10
    hold = write_jsonl(tmp_path / "hold.jsonl", held)
    code, report, _ = check(train, "--holdout", str(hold))
    assert code == 0
    leak = [w for w in report["warnings"] if w["code"] == "holdout_leak"][0]
    assert leak["lines"] == [4, 10]
    assert "train 4 ~ hold-out 4" in leak["message"] and "train 10 ~ hold-out 5" in leak["message"]


def _table(path, rows):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_label_imbalance_and_rare_label(tmp_path):
    rows = [(sentence(i), "billing") for i in range(40)] + [(sentence(100 + i), "tech") for i in range(3)]
    code, report, _ = check(_table(tmp_path / "c.csv", rows))
    w = codes(report)
    assert code == 0
    assert w["label_imbalance"] == list(range(2, 42))  # the majority label's lines (CSV header is line 1)
    assert w["rare_label"] == [42, 43, 44]
    assert report["stats"]["labels"] == {"billing": 40, "tech": 3}


def test_balanced_labels_do_not_warn(tmp_path):
    rows = [(sentence(i), ["a", "b", "c"][i % 3]) for i in range(30)]
    _, report, _ = check(_table(tmp_path / "c.csv", rows))
    assert not {"label_imbalance", "rare_label", "length_imbalance"} & set(codes(report))


def test_labels_are_inferred_for_converted_chat(tmp_path):
    rows = [chat(sentence(i), "spam") for i in range(30)] + [chat(sentence(100 + i), "ham") for i in range(2)]
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    w = codes(report)
    assert w["rare_label"] == [31, 32] and "label_imbalance" in w
    assert "low_diversity" not in w  # a label set is not "the same answer everywhere"


def test_length_imbalance_when_input_length_predicts_label(tmp_path):
    rows = [(sentence(i, 40), "long") for i in range(10)] + [
        (sentence(100 + i, 5), "short") for i in range(10)
    ]
    _, report, _ = check(_table(tmp_path / "c.csv", rows))
    assert codes(report)["length_imbalance"] == list(range(2, 12))


def test_length_imbalance_preferred_always_longer(tmp_path):
    rows = [
        {"prompt": sentence(i), "chosen": sentence(i + 300, 20), "rejected": sentence(i + 600, 3)}
        for i in range(12)
    ]
    _, report, _ = check(write_jsonl(tmp_path / "p.jsonl", rows))
    w = [x for x in report["warnings"] if x["code"] == "length_imbalance"][0]
    assert w["lines"] == list(range(1, 13)) and "longer" in w["message"]


def test_length_imbalance_heavy_tail(tmp_path):
    rows = _base(30)
    rows[12] = chat(sentence(12), sentence(7000, 400))
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    assert codes(report)["length_imbalance"] == [13]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe@example.org today", "e-mail"),
        ("my number is +44 20 7946 0958", "phone"),
        ("card 4111 1111 1111 1111 exp 12/29", "card number"),
        ("pay to GB82 WEST 1234 5698 7654 32", "IBAN"),
    ],
)
def test_pii_each_kind(tmp_path, text, kind):
    rows = _base()
    rows[6] = chat(text, "noted, thank you")
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    w = [x for x in report["warnings"] if x["code"] == "pii"][0]
    assert w["lines"] == [7] and kind in w["message"]


def test_pii_checksums_reject_lookalikes(tmp_path):
    rows = _base()
    rows[6] = chat("order 4111 1111 1111 1112 and ref GB00 WEST 1234 5698 7654 32 on 2024-01-31", "ok then")
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    assert "pii" not in codes(report)


def test_low_diversity_same_answer_and_same_opening(tmp_path):
    rows = [chat("please tell me about " + sentence(i, 6), "I cannot help with that.") for i in range(25)]
    rows += [chat(sentence(200 + i), sentence(300 + i, 9)) for i in range(5)]
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    low = [w for w in report["warnings"] if w["code"] == "low_diversity"]
    msgs = " ".join(w["message"] for w in low)
    assert "same answer" in msgs and "start with the same words" in msgs
    assert all(w["lines"] == list(range(1, 26)) for w in low)


def test_truncation_answer_cut_versus_prompt_only(tmp_path, tiny_model_dir):
    rows = [chat(sentence(i, 3), sentence(i + 500, 3)) for i in range(14)]  # ~70 tiny-model tokens each
    rows[3] = chat(sentence(3, 3), sentence(33, 60))  # long answer: the answer is cut
    rows[8] = chat(sentence(8, 60), "short answer")  # long prompt, short answer: also cut (it comes last)
    code, report, _ = check(
        write_jsonl(tmp_path / "d.jsonl", rows), "--max-seq-len", "200", model=str(tiny_model_dir)
    )
    w = [x for x in report["warnings"] if x["code"] == "truncation"][0]
    assert code == 0 and w["lines"] == [4, 9]
    assert "answer itself is cut in 2" in w["message"] and "tokens are lost" in w["message"]
    assert report["stats"]["truncated_examples"] == 2
    # the same data with room for every example: no warning
    _, report, _ = check(tmp_path / "d.jsonl", "--max-seq-len", "4096", model=str(tiny_model_dir))
    assert "truncation" not in codes(report)
