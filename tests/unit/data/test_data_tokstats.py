"""Token measurement: exact truncation through the byte bound, sampling, and counts equal to the tokenizer's."""

from __future__ import annotations

import pytest

from tunesmith.data import tokstats
from tunesmith.data.tokenize import render, tokenize_chat
from tunesmith.data.tokstats import Conversation, measure
from tunesmith.models.load import load_tokenizer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _conv(i: int, words: int) -> Conversation:
    return Conversation(
        i + 1,
        [
            {"role": "user", "content": f"question {i} " + "word " * words},
            {"role": "assistant", "content": f"answer {i} é😀 ok"},
        ],
    )


def test_counts_equal_the_tokenizer_and_tokenize_chat(tok):
    convs = [_conv(i, i % 7 * 5) for i in range(30)]
    res = measure(tok, convs, max_seq_len=10_000)
    direct = [len(tok(render(tok, c.messages), add_special_tokens=False)["input_ids"]) for c in convs]
    assert res.lengths.tolist() == direct
    assert direct == [tokenize_chat(tok, c.messages).n_tokens_full for c in convs]
    assert not res.sampled and res.truncated == {}


def test_truncation_is_exact_for_every_example_when_sampling(tok, monkeypatch):
    monkeypatch.setattr(tokstats, "SAMPLE", 10)  # force sampling on a small set
    convs = [_conv(i, 200 if i in (3, 41, 77) else 2) for i in range(100)]
    res = measure(tok, convs, max_seq_len=120)
    assert res.sampled and len(res.lengths) == 10
    assert sorted(res.truncated) == [4, 42, 78]  # lines of the long ones, found outside the sample too
    full = tokenize_chat(tok, convs[3].messages).n_tokens_full
    assert res.truncated[4] == full - 120
    assert res.answer_cut == [4, 42, 78] and res.answer_cut_checked == 3
    assert res.bound_held


def test_raw_text_gets_eos_and_no_answer_cut(tok):
    res = measure(tok, [Conversation(1, None, "domain text " * 100)], max_seq_len=50)
    assert res.truncated[1] > 0 and res.answer_cut == []
    assert res.lengths[0] == len(
        tok("domain text " * 100 + tok.eos_token, add_special_tokens=False)["input_ids"]
    )


def test_template_whose_size_depends_on_content_is_rendered_in_full(
    tok, tmp_path, tiny_model_dir, monkeypatch
):
    import json
    import shutil

    model = tmp_path / "echo"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    # repeats each content: the rendered size is not "contents + a constant"
    cfg["chat_template"] = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }} {{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    echo = load_tokenizer(str(model))
    monkeypatch.setattr(tokstats, "SAMPLE", 10)
    convs = [_conv(i, 60 if i in (5, 50) else 2) for i in range(80)]
    res = measure(echo, convs, max_seq_len=150)
    want = {
        c.line: n - 150
        for c in convs
        if (n := len(echo(render(echo, c.messages), add_special_tokens=False)["input_ids"])) > 150
    }
    assert res.truncated == want and sorted(want) == [6, 51]
