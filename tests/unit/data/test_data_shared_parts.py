"""Quality checks judge what varies between examples (issue 19, item 1): content shared by (nearly) all
examples is reported once (``stats.shared``) and left out of near_duplicate, low_diversity, holdout_leak,
length_imbalance, pii and data split; near-identical inputs with different answers are contrastive."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from datahelp import chat, check, codes, runner, sentence, write_jsonl
from intentgen import SYSTEM, intent_rows

from tunesmith.cli.main import app
from tunesmith.data import shared as sh
from tunesmith.data.neardup import normalize_text

pytestmark = pytest.mark.unit
REPO = Path(__file__).parents[3]
BIKE = REPO / "tests/assets/cases/quality-shared-system-prompt/bike_shop_routing.jsonl"


def _questions(path: Path) -> dict[int, set[str]]:
    """The user's own text per line (last user message, or the text column), as a set of words."""
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        text = (
            [m["content"] for m in row["messages"] if m["role"] == "user"][-1]
            if "messages" in row
            else row["text"]
        )
        out[i] = set(normalize_text(text).split())
    return out


def _groups(report: dict, code: str) -> list[list[int]]:
    """The groups quoted in a near_duplicate / contrastive message, rebuilt from its lines and message."""
    w = [x for x in report["warnings"] if x["code"] == code]
    if not w:
        return []
    msg = w[0]["message"]
    body = msg[msg.index("lines ") : msg.index(".", msg.index("lines "))]
    return [[int(n) for n in part.replace("lines", "").split(",")] for part in body.split(";")]


def _assert_groups_share_half_their_words(path: Path, report: dict) -> None:
    qs = _questions(path)

    def best(a: int, among: list[int]) -> float:
        return max(len(qs[a] & qs[b]) / len(qs[a] | qs[b]) for b in among if b != a)

    for g in _groups(report, "near_duplicate"):  # the groups the message spells out (up to 8)
        for a in g:  # each member shares >= 50% of its words (Jaccard) with another member of its group
            assert best(a, g) >= 0.5, (g, a, best(a, g))
    flagged = codes(report).get("near_duplicate", [])
    for a in flagged:  # and every flagged line, in any group, has such a partner among the flagged lines
        assert best(a, flagged) >= 0.5, (a, best(a, flagged))


def _no_low_diversity(report: dict) -> None:
    assert "low_diversity" not in codes(report), report["warnings"]


# --------------------------------------------------------------------------- acceptance: three data sets


def test_case_bike_shop_no_near_duplicates_no_low_diversity():
    # cases/quality-shared-system-prompt: 30 distinct messages behind one 33-word system prompt
    code, report, out = check(BIKE)
    assert code == 0
    w = codes(report)
    assert "near_duplicate" not in w and "low_diversity" not in w, report["warnings"]
    [entry] = report["stats"]["shared"]
    assert entry["role"] == "system" and entry["part"] == "message" and entry["share"] == 1.0
    assert entry["words"] == 33
    assert "system prompt: 100% of examples, 33 words" in " ".join(out.split())


def test_large_intent_set_with_fixed_system_prompt(tmp_path):
    path = write_jsonl(tmp_path / "intents.jsonl", intent_rows(400))
    code, report, _ = check(path)
    assert code == 0
    _no_low_diversity(report)
    _assert_groups_share_half_their_words(path, report)
    assert report["stats"]["shared"][0]["share"] == 1.0
    assert report["stats"]["shared"][0]["words"] == len(SYSTEM.split())


def _demo_data(tmp_path: Path) -> tuple[Path, Path]:
    spec = importlib.util.spec_from_file_location(
        "demo_generate", REPO / "examples/support_tickets/generate.py"
    )
    gen = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    return gen.write_dataset(tmp_path / "demo", 400, 80, seed=7)


def test_demo_data_as_classification_and_as_chat_with_a_system_prompt(tmp_path):
    train, _ = _demo_data(tmp_path)
    _, plain, _ = check(train)
    as_chat = tmp_path / "chat.jsonl"
    res = runner.invoke(app, ["data", "convert", str(train), "--out", str(as_chat)])
    assert res.exit_code == 0, res.output
    _, report, _ = check(as_chat)
    for path, rep in ((train, plain), (as_chat, report)):
        _no_low_diversity(rep)
        _assert_groups_share_half_their_words(path, rep)
    # the system prompt that conversion adds changes none of the verdicts: same groups, same lines
    assert codes(report) == codes(plain)
    assert report["stats"]["shared"][0]["role"] == "system" and "shared" not in plain["stats"]


# --------------------------------------------------------------------------- contrastive pairs


def _invoice(number: str, vendor: str, amount: str, due: str) -> str:
    return f"Invoice {number} from {vendor}: please pay {amount} EUR by {due} to the account on file. Thank you for your business."


def _extraction_rows() -> list[dict]:
    vendors = ["Acme GmbH", "Nordlicht AG", "Blue Fern Ltd", "Kauri Systems", "Vela Print", "Ostara Foods"]
    rows = []
    for i in range(12):
        number, vendor = f"INV-2024-{100 + i:05d}", vendors[i % len(vendors)]
        amount, due = f"{120 + 37 * i}.00", f"2024-0{1 + i % 9}-1{i % 9}"
        rows.append(
            {
                "text": f"{sentence(i, 6)}. " + _invoice(number, vendor, amount, due),
                "fields": {"invoice": number, "vendor": vendor, "amount": amount, "due": due},
            }
        )
    return rows


def test_extraction_near_identical_inputs_with_different_fields_are_contrastive(tmp_path):
    rows = _extraction_rows()
    assert rows[3]["fields"]["amount"] == "231.00"
    twin = dict(rows[3], text=rows[3]["text"].replace("231.00", "213.00"))  # one amount changed ...
    twin["fields"] = dict(rows[3]["fields"], amount="213.00")  # ... and so is the answer
    same = dict(rows[5], text=rows[5]["text"] + " Regards.")  # one word more, the same answer
    code, report, out = check(write_jsonl(tmp_path / "x.jsonl", [*rows, twin, same]))
    w = {x["code"]: x for x in report["warnings"]}
    assert code == 0
    assert w["contrastive"]["lines"] == [4, 13] and w["contrastive"]["level"] == "info"
    assert "Keep them" in w["contrastive"]["message"]
    assert w["near_duplicate"]["lines"] == [6, 14] and w["near_duplicate"]["level"] == "warning"
    assert "note contrastive" in out and "1 note(s)" in out


def test_chat_json_answers_behind_a_system_prompt_contrastive(tmp_path):
    system = "Extract the invoice number, vendor, amount and due date from the message. Reply with one JSON object with the keys invoice, vendor, amount, due."
    rows = [chat(r["text"], json.dumps(r["fields"]), system) for r in _extraction_rows()]
    twin = json.loads(json.dumps(rows[7]))
    assert "Nordlicht AG" in twin["messages"][1]["content"]
    twin["messages"][1]["content"] = twin["messages"][1]["content"].replace("Nordlicht AG", "Vela Print")
    fields = json.loads(twin["messages"][2]["content"])
    twin["messages"][2]["content"] = json.dumps(dict(fields, vendor="Vela Print"))
    _, report, _ = check(write_jsonl(tmp_path / "c.jsonl", [*rows, twin]))
    w = codes(report)
    assert w["contrastive"] == [8, 13] and "near_duplicate" not in w
    assert report["stats"]["shared"][0]["role"] == "system"


def test_exactly_the_same_input_with_another_answer_stays_a_contradiction(tmp_path):
    rows = _extraction_rows()
    rows.append(dict(rows[2], fields=dict(rows[2]["fields"], amount="1.00")))
    _, report, _ = check(write_jsonl(tmp_path / "x.jsonl", rows))
    w = codes(report)
    assert w["contradiction"] == [3, 13] and "contrastive" not in w


# --------------------------------------------------------------------------- instructions in the user turn


def test_fixed_instruction_prefix_in_the_user_turn(tmp_path):
    prefix = "Classify the sentiment of this product review as positive or negative.\n\nReview: "
    rows = [chat(prefix + sentence(i, 5), "positive" if i % 2 else "negative") for i in range(40)]
    code, report, _ = check(write_jsonl(tmp_path / "p.jsonl", rows))
    assert code == 0
    w = codes(report)
    assert "low_diversity" not in w and "near_duplicate" not in w, report["warnings"]
    [entry] = report["stats"]["shared"]
    assert (entry["role"], entry["part"], entry["share"]) == ("user", "prefix", 1.0)
    assert entry["words"] == len(prefix.split())


def test_fixed_instruction_suffix_in_a_completion_prompt(tmp_path):
    suffix = "\n\nAnswer with the name of the city only."
    rows = [{"prompt": sentence(i, 4) + suffix, "completion": sentence(i + 300, 2)} for i in range(30)]
    _, report, _ = check(write_jsonl(tmp_path / "s.jsonl", rows))
    assert "near_duplicate" not in codes(report)
    assert [(e["role"], e["part"]) for e in report["stats"]["shared"]] == [("prompt", "suffix")]


def test_tool_schemas_and_few_shot_turns_shared_by_every_example(tmp_path):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find an order by its number and return its status and delivery date.",
                "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            },
        }
    ]
    shots = [{"role": "user", "content": "Where is my parcel?"}, {"role": "assistant", "content": "orders"}]
    rows = []
    for i, r in enumerate(intent_rows(60, seed=3)):
        question, answer = r["messages"][1]["content"], r["messages"][2]["content"]
        msgs = [*shots, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"messages": msgs, "tools": tools} if i % 4 else {"messages": msgs})
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    code, report, _ = check(path)
    assert code == 0
    _no_low_diversity(report)
    _assert_groups_share_half_their_words(path, report)
    shared = {(e["role"], e["part"]): e["share"] for e in report["stats"]["shared"]}
    assert shared == {("user", "message"): 1.0, ("assistant", "message"): 1.0, ("tools", "message"): 0.75}


def test_natural_openings_are_not_instructions(tmp_path):
    # "How do I" opens every question but ends at no sentence or line boundary: it stays, and is reported
    rows = [chat("how do I get " + sentence(i, 5), sentence(i + 400, 6)) for i in range(25)]
    _, report, _ = check(write_jsonl(tmp_path / "o.jsonl", rows))
    assert "low_diversity" in codes(report) and "shared" not in report["stats"]


# --------------------------------------------------------------------------- leaks, lengths, pii, split


def test_holdout_leak_judged_without_the_shared_system_prompt(tmp_path):
    rows = intent_rows(300, seed=1)
    train, held = rows[:240], rows[240:]
    held.append(rows[17])  # one real leak: a training row copied into the hold-out
    tr = write_jsonl(tmp_path / "train.jsonl", train)
    ho = write_jsonl(tmp_path / "hold.jsonl", held)
    _, report, _ = check(tr, "--holdout", str(ho))
    leak = [w for w in report["warnings"] if w["code"] == "holdout_leak"]
    assert leak and 18 in leak[0]["lines"] and "train 18 ~ hold-out 61" in leak[0]["message"]
    tq, hq = _questions(tr), _questions(ho)
    for a, b in re.findall(r"train (\d+) ~ hold-out (\d+)", leak[0]["message"]):
        t, h = tq[int(a)], hq[int(b)]
        assert len(t & h) / len(t | h) >= 0.5  # every reported leak is a real near copy of the question


def test_holdout_with_its_own_system_prompt_is_compared_on_its_questions(tmp_path):
    rows = intent_rows(200, seed=4)
    other = (
        "Route the request to one intent: weather, music, restaurant, movies, rate_book, playlist, search."
    )
    held = [json.loads(json.dumps(r)) for r in rows[150:] + [rows[9]]]  # line 51 copies training line 10
    for r in held:
        r["messages"][0]["content"] = other
    tr = write_jsonl(tmp_path / "train.jsonl", rows[:150])
    ho = write_jsonl(tmp_path / "hold.jsonl", held)
    _, report, _ = check(tr, "--holdout", str(ho))
    leak = [w for w in report["warnings"] if w["code"] == "holdout_leak"]
    assert leak and "train 10 ~ hold-out 51" in leak[0]["message"]
    tq, hq = _questions(tr), _questions(ho)
    for a, b in re.findall(r"train (\d+) ~ hold-out (\d+)", leak[0]["message"]):
        assert len(tq[int(a)] & hq[int(b)]) / len(tq[int(a)] | hq[int(b)]) >= 0.5


def test_length_imbalance_seen_through_a_long_system_prompt(tmp_path):
    system = " ".join(sentence(900, 60).split())  # 60 words that every example carries
    rows = [chat(sentence(i, 3), "short", system) for i in range(10)]
    rows += [chat(sentence(100 + i, 12), "long", system) for i in range(10)]
    _, report, _ = check(write_jsonl(tmp_path / "l.jsonl", rows))
    assert codes(report)["length_imbalance"] == list(range(11, 21))


def test_pii_in_the_shared_system_prompt_is_reported_once(tmp_path):
    system = "You are the help desk of Harbor Bikes. For anything else, customers can call +44 20 7946 0958."
    rows = [chat(sentence(i), sentence(i + 500, 8), system) for i in range(14)]
    rows[4] = chat("my email is jane.doe@example.org", "thanks, noted", system)
    _, report, _ = check(write_jsonl(tmp_path / "d.jsonl", rows))
    [w] = [x for x in report["warnings"] if x["code"] == "pii"]
    assert w["lines"] == [5]  # the example with its own e-mail, not all 14
    assert "1 phone number(s)" in w["message"] and "shared" in w["message"]


def test_split_groups_by_the_varying_part(tmp_path):
    path = write_jsonl(tmp_path / "intents.jsonl", intent_rows(300, seed=2))
    res = runner.invoke(app, ["data", "split", str(path), "--holdout", "0.2", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    n_hold = len((tmp_path / "s" / "holdout.jsonl").read_text().splitlines())
    assert 55 <= n_hold <= 65  # 20% of 300: not one giant group held together by the system prompt
    _, report, _ = check(tmp_path / "s" / "train.jsonl", "--holdout", str(tmp_path / "s" / "holdout.jsonl"))
    assert "holdout_leak" not in codes(report)


# --------------------------------------------------------------------------- shared.py directly


def test_find_shared_parts_prefixes_tools_and_two_system_prompts():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    parts = []
    for i in range(40):
        system = "You route tickets." if i % 2 else "You answer in French."
        question = ("user", f"Ticket text follows.\n{sentence(i, 4)}")
        parts.append(sh.parts_of_messages([{"role": "system", "content": system}], tools) + (question,))
    items = sh.find_shared(parts)
    kinds = {(i.role, i.kind, i.text) for i in items}
    assert ("system", "message", "You route tickets.") in kinds  # 50% each: both are templates
    assert ("system", "message", "You answer in French.") in kinds
    assert ("tools", "message", json.dumps(tools, sort_keys=True)) in kinds
    assert ("user", "prefix", "Ticket text follows.\n") in kinds
    f = sh.factor(parts, items)
    assert f.vary[0] == sentence(0, 4) and f.question[0] == sentence(0, 4)
    assert f.context[0] != f.context[1]  # different system prompts: different inputs
    assert f.counts == [40 if i.role in ("tools", "user") else 20 for i in items]


def test_the_question_is_never_removed_whole():
    parts = [(("system", "Be brief."), ("user", "hi")) for _ in range(10)]
    f = sh.factor(parts, sh.find_shared(parts))
    assert f.vary == ["hi"] * 10  # ten identical questions stay visible (as duplicates)


def test_shared_stats_count_tokens_with_a_model(tmp_path, tiny_model_dir):
    _, report, _ = check(BIKE, model=str(tiny_model_dir))
    [entry] = report["stats"]["shared"]
    assert entry["tokens"] > entry["words"]  # the tiny byte-level tokenizer: more tokens than words
