"""Grounded answers: the RAG prompt, numbered citations, and "not in the documents".

Three guards decide that the documents do not support an answer (each named in ``Answer.reason``):

1. retrieval: no passage, or the best passage's cosine to the question is below ``min_relevance``: the
   model is not even asked (a 135M model will answer anything it is asked);
2. the model itself says so (the prompt tells it the exact phrase);
3. support, per sentence: a sentence under ``min_support`` of whose content words occur in the passages
   is dropped as made up; with no sentence left the user gets "not in the documents" (the model's text
   stays in ``Answer.raw``).

Citations: small models cite unreliably, so citations are checked and completed after generation: a
``[n]`` pointing at no passage is dropped, and a sentence without one gets the passage that shares most
of its content words (when that passage covers at least half of them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.rag.bm25 import tokenize
from tunesmith.rag.retrieve import Index, Mode, Passage, retrieve

NOT_IN_DOCUMENTS = "Not in the documents."
RAG_INSTRUCTIONS = (
    "Answer the question using only the numbered passages. Cite the passage you used after each sentence, "
    "like [1]. If the passages do not contain the answer, reply exactly: Not in the documents."
)
_NOT_IN_DOCS_PATTERNS = re.compile(
    r"not in the (provided |given )?(documents?|passages?|context)|"
    r"(passages?|documents?|context) (do|does) not (contain|mention|say|provide)|no information (about|on)",
    re.IGNORECASE,
)
_CITATION = re.compile(r"\s*\[(\d+)\]")
Generator = Callable[[list[dict[str, Any]]], str]


@dataclass(frozen=True)
class Answer:
    text: str  # with [n] citations, or NOT_IN_DOCUMENTS
    grounded: bool
    reason: str
    passages: list[Passage] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)  # 1-based passage numbers cited in ``text``
    raw: str = ""  # the model's own text, before checks
    support: float | None = None  # share of the raw answer's content words found in the passages


def build_rag_messages(
    question: str, passages: list[Passage], system_prompt: str | None = None
) -> list[dict[str, Any]]:
    """Chat messages that ask ``question`` over numbered ``passages`` (the format RAFT rows train on)."""
    system = f"{system_prompt.strip()}\n\n{RAG_INSTRUCTIONS}" if system_prompt else RAG_INSTRUCTIONS
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": format_context(question, passages)},
    ]


def format_context(question: str, passages: list[Passage]) -> str:
    blocks = []
    for i, p in enumerate(passages, start=1):
        where = ", ".join(x for x in (p.source, p.location) if x)
        blocks.append(f"[{i}] ({where})\n{p.text.strip()}")
    body = "\n\n".join(blocks) if blocks else "(no passages)"
    return f"Passages:\n\n{body}\n\nQuestion: {question.strip()}"


def ask(
    index: Index,
    question: str,
    generator: Generator,
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    min_relevance: float = 0.25,
    min_support: float = 0.5,
    system_prompt: str | None = None,
) -> Answer:
    """Retrieve, generate with ``generator(messages) -> text``, then check support and citations."""
    passages = retrieve(index, question, k=k, mode=mode)
    refused = relevance_guard(index, question, passages, min_relevance)
    if refused is not None:
        return refused
    raw = generator(build_rag_messages(question, passages, system_prompt)).strip()
    return check_answer(raw, passages, min_support)


def relevance_guard(
    index: Index, question: str, passages: list[Passage], min_relevance: float
) -> Answer | None:
    """Guard 1: the "not in the documents" answer when retrieval found nothing close enough, else None."""
    if not passages:
        return Answer(NOT_IN_DOCUMENTS, False, "no passage matched the question")
    best = max(index.cosine(question, [p.chunk_id for p in passages]))
    if best < min_relevance:
        return Answer(
            NOT_IN_DOCUMENTS,
            False,
            f"best passage similarity {best:.2f} < min_relevance {min_relevance}",
            passages,
        )
    return None


def check_answer(raw: str, passages: list[Passage], min_support: float = 0.5) -> Answer:
    """Apply guards 2 and 3 and fix up citations (the part of ``ask`` after generation).

    Support is judged per sentence: sentences the passages do not support are dropped (small models often
    add a made-up sentence after a correct one); with none left, the answer is "not in the documents"."""
    if not raw or is_not_in_documents(raw):
        return Answer(NOT_IN_DOCUMENTS, False, "the model found no answer in the passages", passages, raw=raw)
    texts = [p.text for p in passages]
    overall = support(strip_citations(raw), texts)
    sentences = split_sentences(raw)
    kept = [
        x
        for x in sentences
        if tokenize(strip_citations(x)) and support(strip_citations(x), texts) >= min_support
    ]
    if not kept:
        return Answer(
            NOT_IN_DOCUMENTS, False,
            f"no sentence of the answer is supported by the passages ({overall:.0%} of its words occur in them)",
            passages, raw=raw, support=overall,
        )  # fmt: skip
    text, cited = cite(" ".join(kept), passages)
    dropped = len(sentences) - len(kept)
    reason = f"{overall:.0%} of the answer's words occur in the passages" + (
        f"; {dropped} unsupported sentence(s) dropped" if dropped else ""
    )
    return Answer(text, True, reason, passages, cited, raw, overall)


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]


def is_not_in_documents(text: str) -> bool:
    return bool(_NOT_IN_DOCS_PATTERNS.search(text))


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text).strip()


def support(answer: str, texts: list[str]) -> float:
    """Share of the answer's content words (stemmed, stop words removed) found in ``texts``; 1.0 if none."""
    words = tokenize(answer)
    if not words:
        return 1.0
    vocab = {w for t in texts for w in tokenize(t)}
    return sum(w in vocab for w in words) / len(words)


def cite(text: str, passages: list[Passage]) -> tuple[str, list[int]]:
    """Drop citations to missing passages; add ``[n]`` to uncited sentences that a passage supports."""
    n = len(passages)
    text = _CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= n else "", text)
    sentences = split_sentences(text)
    out = []
    passage_words = [set(tokenize(p.text)) for p in passages]
    for s in sentences:
        if not _CITATION.search(s):
            words = tokenize(s)
            if words:
                cover = [sum(w in pw for w in words) / len(words) for pw in passage_words]
                best = max(range(n), key=lambda i: cover[i]) if n else None
                if best is not None and cover[best] >= 0.5:
                    s = _add_citation(s, best + 1)
        out.append(s)
    final = " ".join(out)
    cited = sorted({int(m) for m in re.findall(r"\[(\d+)\]", final)})
    return final, cited


def _add_citation(sentence: str, n: int) -> str:
    m = re.search(r"[.!?]+$", sentence)
    if m:
        return f"{sentence[: m.start()]} [{n}]{m.group(0)}"
    return f"{sentence} [{n}]"


def make_generator(model: Any, tokenizer: Any, max_tokens: int = 128) -> Generator:
    """A greedy generator over the shared generation path (tunesmith.models.generate)."""
    from tunesmith.models.generate import GenerationSettings, generate

    settings = GenerationSettings(max_tokens=max_tokens)

    def run(messages: list[dict[str, Any]]) -> str:
        return generate(model, tokenizer, [messages], settings, batch_size=1)[0].text

    return run
