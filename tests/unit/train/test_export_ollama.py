"""The Ollama Modelfile: the Go-template subset renderer, the template derived from a model's own chat template
(proven equal to it), refusals for templates Ollama cannot express, and the Modelfile text round trip."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.models.tiny import CHATML_TEMPLATE, build_tiny_tokenizer
from tunesmith.train.ollama import (
    Modelfile,
    build_modelfile,
    derive_go_template,
    parse_modelfile,
    render_go_template,
    render_ollama,
)

pytestmark = pytest.mark.unit

# A Llama-3-style template with a default system block (SmolLM2 writes one when no system turn is given).
LLAMA3_DEFAULT_SYSTEM = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' }}{% endif %}"
    "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] "
    "+ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Gemma-style: no system role; the system text is glued into the first user turn (not expressible per turn).
GEMMA_LIKE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}{% else %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ m['content'] + '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@pytest.fixture()
def tok():
    t = build_tiny_tokenizer()
    t.chat_template = CHATML_TEMPLATE
    return t


CONVERSATIONS = [
    [{"role": "user", "content": "Where is my refund?"}],
    [{"role": "system", "content": "Route tickets."}, {"role": "user", "content": "App crashes\non start"}],
    [
        {"role": "system", "content": "Route tickets."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "billing"},
        {"role": "user", "content": "two"},
    ],
]


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, LLAMA3_DEFAULT_SYSTEM])
def test_derived_template_renders_like_the_models_own(tok, template) -> None:
    tok.chat_template = template
    go = derive_go_template(tok)
    for conv in CONVERSATIONS:
        assert render_ollama(go, conv) == tok.apply_chat_template(
            conv, tokenize=False, add_generation_prompt=True
        )


def test_modelfile_system_stands_in_for_a_missing_system_turn(tok) -> None:
    mf = build_modelfile(tok, "model-f16.gguf", "You route support tickets.")
    conv = [{"role": "user", "content": "My invoice is wrong"}]
    ours = tok.apply_chat_template(
        [{"role": "system", "content": "You route support tickets."}, *conv],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert render_ollama(mf.template, conv, mf.system) == ours
    # a request's own system turn wins over the Modelfile's SYSTEM, as in Ollama
    own = [{"role": "system", "content": "Other."}, *conv]
    assert render_ollama(mf.template, own, mf.system).startswith("<|im_start|>system\nOther.<|im_end|>")


def test_modelfile_text_round_trips_and_names_the_stops(tok) -> None:
    mf = build_modelfile(tok, "model-q8_0.gguf", 'Answer with one word.\nNo "quotes" needed.')
    text = mf.text()
    assert text.splitlines()[1] == "FROM ./model-q8_0.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    back = parse_modelfile(text)
    assert back == mf
    assert back.stop == ("<|im_end|>",)


def test_template_ollama_cannot_express_is_refused_with_the_reason(tok) -> None:
    tok.chat_template = GEMMA_LIKE
    with pytest.raises(TunesmithError) as err:
        build_modelfile(tok, "m.gguf", None)
    assert "cannot be written as an Ollama template" in str(err.value)
    assert "--no-modelfile" in (err.value.hint or "")


def test_go_template_subset_semantics() -> None:
    data = {
        "System": "",
        "Messages": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
    }
    tpl = (
        "{{- if .System }}S{{ else }}no-system{{ end }}\n  "
        '{{- range .Messages }}[{{ if eq .Role "user" }}U:{{ .Content }}{{ else if eq .Role "assistant" }}'
        "A:{{ .Content }}{{ end }}]{{ end }} \n {{- /* */ -}}"
    )
    with pytest.raises(TunesmithError):  # comments are outside the subset: refused, never mis-rendered
        render_go_template(tpl, data)
    tpl = tpl.replace(" \n {{- /* */ -}}", '  \n{{- if and (ne .System "x") .Messages }}!{{ end -}}  \n tail')
    assert render_go_template(tpl, data) == "no-system[U:hi][A:yo]!tail"
    with pytest.raises(TunesmithError, match="no field"):
        render_go_template("{{ .Missing }}", data)
    with pytest.raises(TunesmithError, match="end"):
        render_go_template("{{ if .System }}x", data)


def test_parse_modelfile_refuses_unknown_instructions_and_missing_template() -> None:
    with pytest.raises(TunesmithError, match="unknown instruction ADAPTERX"):
        parse_modelfile('FROM ./m.gguf\nTEMPLATE """x"""\nADAPTERX y\n')
    with pytest.raises(TunesmithError, match="FROM and TEMPLATE"):
        parse_modelfile("FROM ./m.gguf\n")
    with pytest.raises(TunesmithError, match="cannot quote"):
        Modelfile(model="m.gguf", template='a"""b', stop=()).text()
