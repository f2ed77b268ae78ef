"""A tiny from-config Llama with a real tokenizer and a ChatML chat template, for tests and dry runs.

The tokenizer is a byte-level BPE trained in milliseconds on a built-in corpus, so it encodes any text
(no unknown tokens) and builds offline. Everything is seeded: the same folder is produced every time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from tunesmith.paths import tunesmith_home

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML with Hermes-style tool calling (the shape Qwen 2.5 and Hermes models use): the tool list in the
# system turn inside <tools></tools>, each call as <tool_call>{"name", "arguments"}</tool_call>, tool results
# as <tool_response> in a user turn. Written for tests; every output goes through {{- }} so the source's own
# whitespace never reaches the prompt.
HERMES_TOOLS_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}"
    "{{- 'You may call one or more functions. Their signatures are inside <tools></tools>:\n<tools>' }}"
    "{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}"
    '{{- \'\n</tools>\nFor each call write <tool_call>{"name": <name>, "arguments": <object>}</tool_call>.\''
    " + '<|im_end|>\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'system' and loop.first %}"
    "{%- elif m.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' + (m.content or '') }}"
    "{%- for c in (m.tool_calls or []) %}"
    "{%- if m.content or not loop.first %}{{- '\n' }}{%- endif %}"
    "{{- '<tool_call>\n' + ({'name': c.function.name, 'arguments': c.function.arguments} | tojson)"
    " + '\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- elif m.role == 'tool' %}"
    "{{- '<|im_start|>user\n<tool_response>\n' + m.content + '\n</tool_response><|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please route this ticket to billing, technical support, or account management.",
    "Thank you for contacting support. We have received your request and will reply shortly.",
    "Extract the name, date, amount and invoice number from the document as JSON.",
    "positive negative neutral urgent normal low high refund password login invoice error crash",
    "system user assistant tool you are a helpful assistant answer the question briefly",
    '{"name": "Alice", "amount": 42.50, "date": "2024-01-31", "label": "billing"}',
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 yes no true false null",
]
TINY_VERSION = 1  # bump when the recipe below changes, so cached copies are rebuilt


def tiny_config_kwargs(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny Llama + tokenizer to ``out_dir`` (created) and return it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        **tiny_config_kwargs(len(tok)),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def ensure_tiny_tools_model() -> Path:
    """The tiny model with ``HERMES_TOOLS_TEMPLATE`` (a tool-calling chat template), cached like
    ``ensure_tiny_model``: same weights and vocabulary, only the template differs."""
    return ensure_tiny_model(chat_template=HERMES_TOOLS_TEMPLATE)


def ensure_tiny_model(chat_template: str | None = None) -> Path:
    """The cached tiny model under TUNESMITH_HOME (built atomically on first use); ``chat_template``
    replaces the ChatML template (a separate cached folder per template)."""
    key = hashlib.sha1(f"{TINY_VERSION}{chat_template or ''}".encode()).hexdigest()[:8]
    target = (
        tunesmith_home() / "models" / (f"tiny-{key}" if chat_template is None else f"tiny-template-{key}")
    )
    if (target / ".complete").exists():
        return target
    tmp = target.parent / f".tiny.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny_model(tmp)
    if chat_template is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tmp)
        tok.chat_template = chat_template
        tok.save_pretrained(tmp)
    (tmp / ".complete").write_text("ok")
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target
