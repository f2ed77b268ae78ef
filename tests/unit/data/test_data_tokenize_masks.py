import pytest

from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_chat, tokenize_text
from tunesmith.models.load import load_tokenizer

pytestmark = pytest.mark.unit

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there.", "weight": 0},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


def _trained_text(tok, t):
    return tok.decode([i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE_INDEX])


def test_only_weighted_assistant_turns_and_eot_are_trained(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    t = tokenize_chat(tok, CONV)
    assert _trained_text(tok, t) == "Paris.<|im_end|>"
    assert t.labels[-1] == IGNORE_INDEX or tok.decode([t.input_ids[-1]]) != "\n"


def test_weight_one_trains_every_assistant_turn(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    conv = [dict(m) for m in CONV]
    conv[2]["weight"] = 1
    assert _trained_text(tok, tokenize_chat(tok, conv)) == "Hello there.<|im_end|>Paris.<|im_end|>"


def test_pad_equal_to_eos_still_trains_eos(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    tok.pad_token = tok.eos_token
    t = tokenize_chat(tok, CONV)
    assert tok.eos_token_id in [lab for lab in t.labels if lab != IGNORE_INDEX]


def test_truncation_reports_cut_answer(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    full = tokenize_chat(tok, CONV)
    t = tokenize_chat(tok, CONV, max_len=len(full.input_ids) - 3)
    assert (
        t.truncated_answer
        and t.n_tokens_full == len(full.input_ids)
        and len(t.input_ids) == len(full.input_ids) - 3
    )


def test_train_on_all_and_text(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    t = tokenize_chat(tok, CONV, train_on="all")
    assert t.labels == t.input_ids
    d = tokenize_text(tok, "Domain text.")
    assert d.input_ids[-1] == tok.eos_token_id and d.labels == d.input_ids


@pytest.mark.real
def test_smollm2_masks(smollm2_dir):
    tok = load_tokenizer(str(smollm2_dir))
    assert _trained_text(tok, tokenize_chat(tok, CONV)) == "Paris.<|im_end|>"
