"""Shared generation on the tiny from-config model: batching must not change greedy answers."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.tokenize import prompt_ids
from tunesmith.errors import TunesmithError
from tunesmith.models.generate import (
    GenerationSettings,
    generate,
    generate_from_ids,
    score_labels,
    stop_token_ids,
)
from tunesmith.models.load import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.unit

CONVS = [
    [{"role": "user", "content": "hello"}],
    [
        {"role": "system", "content": "Route the ticket."},
        {"role": "user", "content": "my invoice is wrong and I want a refund now"},
    ],
    [{"role": "user", "content": "password reset"}],
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def test_batched_equals_one_at_a_time_and_counts(tiny):
    model, tok = tiny
    s = GenerationSettings(max_tokens=12)
    batched = generate(model, tok, CONVS, s, batch_size=3)
    single = [generate(model, tok, [c], s, batch_size=1)[0] for c in CONVS]
    assert [g.text for g in batched] == [g.text for g in single]
    for g, c in zip(batched, CONVS, strict=True):
        assert g.prompt_tokens == len(prompt_ids(tok, c))
        assert 1 <= g.completion_tokens <= 12
        assert g.finish_reason in ("stop", "length")
        if g.finish_reason == "length":
            assert g.completion_tokens == 12
        assert g.latency_s > 0


def test_greedy_matches_manual_argmax_decoding(tiny):
    model, tok = tiny
    ids = prompt_ids(tok, CONVS[1])
    stops = set(stop_token_ids(model, tok))
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(6):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            if nxt in stops:
                break
            seq.append(nxt)
    expected = tok.decode(seq[len(ids) :], skip_special_tokens=True).strip()
    got = generate_from_ids(model, tok, [ids], GenerationSettings(max_tokens=6))[0]
    assert got.text == expected


def test_seeded_sampling_is_repeatable_and_stop_strings_cut(tiny):
    model, tok = tiny
    s = GenerationSettings(max_tokens=10, temperature=1.0, seed=7)
    a = generate(model, tok, CONVS, s)
    b = generate(model, tok, CONVS, s)
    assert [g.text for g in a] == [g.text for g in b]
    free = generate(model, tok, CONVS[:1], GenerationSettings(max_tokens=10))[0].text
    if len(free) >= 2:
        stop = free[1]
        cut = generate(model, tok, CONVS[:1], GenerationSettings(max_tokens=10, stop=(stop,)))[0]
        assert stop not in cut.text and free.startswith(cut.text)


def test_label_scores_equal_manual_log_likelihood(tiny):
    model, tok = tiny
    labels = ["billing", "tech", "account"]
    res = score_labels(model, tok, CONVS[1:], labels, batch_size=2)
    assert res.labels == labels and len(res.logprobs) == 2
    # manual: full templated conversation with each label as the answer, one sequence at a time
    for k, msgs in enumerate(CONVS[1:]):
        p = prompt_ids(tok, msgs)
        for j, label in enumerate(labels):
            full = tok.apply_chat_template([*msgs, {"role": "assistant", "content": label}], tokenize=False)
            ids = tok(full.rstrip("\n"), add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
            manual = float(sum(lp[t - 1, ids[t]] for t in range(len(p), len(ids))))
            assert res.logprobs[k][j] == pytest.approx(manual, abs=1e-3)
    best = [labels[max(range(3), key=row.__getitem__)] for row in res.logprobs]
    assert res.predictions == best


def test_bad_settings_are_clear_errors():
    with pytest.raises(TunesmithError, match="temperature"):
        GenerationSettings(temperature=-1)
    with pytest.raises(TunesmithError, match="top_p"):
        GenerationSettings(top_p=0)
