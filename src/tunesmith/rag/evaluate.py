"""``tunesmith rag eval``: retrieval recall@k / MRR per mode, and (with a model) answer quality.

Definitions (docs/rag.md has worked examples; tests check them on hand-computed cases):

- a passage is *relevant* to a QA item when it comes from the item's ``source`` (same relative path, or
  same file name); without a ``source``, when it contains the normalised answer string;
- recall@k: share of questions with a relevant passage among the top k;
- MRR: mean of 1/rank of the first relevant passage within the top max(k) (0 when none);
- exact match / token F1: SQuAD normalisation (lower case, no punctuation or articles), citations removed;
  a "not in the documents" answer scores 0 unless the reference says the same;
- faithfulness: mean, over questions where the model attempted an answer (it did not decline and retrieval
  did not refuse), of the share of the model's *raw* answer's content words that occur in the retrieved
  passages (``answer.support``), i.e. measured before the per-sentence filter of ``check_answer`` hides
  unsupported sentences from the user.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.rag.answer import (
    Answer,
    Generator,
    build_rag_messages,
    check_answer,
    is_not_in_documents,
    relevance_guard,
    strip_citations,
)
from tunesmith.rag.retrieve import MODES, Index, Passage, retrieve


@dataclass(frozen=True)
class QAItem:
    line: int
    question: str
    answer: str
    source: str | None


def load_qa(path: Path) -> list[QAItem]:
    """Read QA.jsonl; every bad line is reported with its number, and nothing is evaluated on bad input."""
    path = Path(path)
    if not path.is_file():
        raise TunesmithError(
            f"QA file {path} does not exist.",
            "Pass a JSONL file with question, answer and optional source per line.",
        )
    items, problems = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}:{i}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{path.name}:{i}: expected a JSON object")
            continue
        missing = [f for f in ("question", "answer") if not isinstance(obj.get(f), str) or not obj[f].strip()]
        if missing:
            problems.append(f"{path.name}:{i}: missing or empty {' and '.join(missing)}")
            continue
        src = obj.get("source")
        items.append(QAItem(i, obj["question"], obj["answer"], str(src) if src else None))
    if problems:
        shown = "\n  ".join(problems[:10]) + (
            f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise TunesmithError(
            f"{path} has {len(problems)} bad line(s):\n  {shown}",
            'Each line needs {"question": ..., "answer": ..., "source"?: ...}.',
        )
    if not items:
        raise TunesmithError(
            f"{path} holds no QA items.",
            'Add lines like {"question": "...", "answer": "...", "source": "guide.md"}.',
        )
    return items


# --------------------------------------------------------------------------- metrics


def is_relevant(passage: Passage, item: QAItem) -> bool:
    if item.source:
        want = item.source.replace("\\", "/").lstrip("./")
        src = passage.source
        return src == want or src.endswith("/" + want) or src.rsplit("/", 1)[-1] == want
    return normalize_answer(item.answer) in normalize_answer(passage.text)


def first_relevant_rank(passages: list[Passage], item: QAItem) -> int | None:
    for rank, p in enumerate(passages, start=1):
        if is_relevant(p, item):
            return rank
    return None


def retrieval_metrics(ranks: list[int | None], ks: list[int]) -> dict[str, float]:
    """recall@k for each k and MRR (within max(ks)) from the first-relevant rank of each question."""
    n = len(ranks)
    if n == 0:
        raise TunesmithError("No questions to score.")
    depth = max(ks)
    out = {f"recall@{k}": sum(r is not None and r <= k for r in ranks) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None and r <= depth) / n
    return out


def normalize_answer(text: str) -> str:
    text = strip_citations(text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    if is_not_in_documents(prediction):
        return float(is_not_in_documents(reference))
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    if is_not_in_documents(prediction):
        return float(is_not_in_documents(reference))
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def answer_metrics(answers: list[Answer], items: list[QAItem]) -> dict[str, float | int]:
    answered = [a for a in answers if a.grounded]
    attempted = [a.support for a in answers if a.support is not None]
    n = len(items)
    return {
        "n": n,
        "exact_match": sum(exact_match(a.text, q.answer) for a, q in zip(answers, items, strict=True)) / n,
        "token_f1": sum(token_f1(a.text, q.answer) for a, q in zip(answers, items, strict=True)) / n,
        "faithfulness": sum(attempted) / len(attempted) if attempted else 0.0,
        "attempted": len(attempted),
        "answered": len(answered),
        "not_in_documents": n - len(answered),
    }


# --------------------------------------------------------------------------- the run


def run_rag_eval(
    index: Index,
    items: list[QAItem],
    ks: list[int],
    out_dir: Path,
    *,
    generate_many: Any | None = None,
    answer_k: int = 5,
    answer_mode: str = "hybrid",
    min_relevance: float = 0.25,
) -> dict[str, Any]:
    """Score every retrieval mode; with ``generate_many(list[messages]) -> list[str]`` also answers.
    Writes ``out_dir/rag_eval.json`` and per-question ``out_dir/rag_eval_details.jsonl``."""
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise TunesmithError(f"--k values must be positive integers (got {ks}).", "Example: --k 1,5,10")
    depth = max(ks)
    details: list[dict[str, Any]] = [{"line": q.line, "question": q.question} for q in items]
    retrieval: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ranks = []
        for q, d in zip(items, details, strict=True):
            rank = first_relevant_rank(retrieve(index, q.question, k=depth, mode=mode), q)  # type: ignore[arg-type]
            ranks.append(rank)
            d[f"rank_{mode}"] = rank
        retrieval[mode] = retrieval_metrics(ranks, ks)
    answers_out: dict[str, Any] = {}
    if generate_many is not None:
        answers = _answer_all(index, items, generate_many, answer_k, answer_mode, min_relevance)
        answers_out = {"mode": answer_mode, "k": answer_k, **answer_metrics(answers, items)}
        for a, d in zip(answers, details, strict=True):
            d.update(answer=a.text, grounded=a.grounded, reason=a.reason, raw=a.raw)
    result = {"n": len(items), "retrieval": retrieval, "answers": answers_out}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rag_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / "rag_eval_details.jsonl", "w") as fh:
        for d in details:
            fh.write(json.dumps(d) + "\n")
    return result


def _answer_all(
    index: Index, items: list[QAItem], generate_many: Any, k: int, mode: str, min_relevance: float
) -> list[Answer]:
    answers: list[Answer | None] = []
    prompts, slots, ctx = [], [], []
    for i, q in enumerate(items):
        passages = retrieve(index, q.question, k=k, mode=mode)  # type: ignore[arg-type]
        refused = relevance_guard(index, q.question, passages, min_relevance)
        answers.append(refused)
        if refused is None:
            prompts.append(build_rag_messages(q.question, passages))
            slots.append(i)
            ctx.append(passages)
    texts = generate_many(prompts) if prompts else []
    for i, raw, passages in zip(slots, texts, ctx, strict=True):
        answers[i] = check_answer(raw.strip(), passages)
    return [a for a in answers if a is not None]


def make_batch_generator(model: Any, tokenizer: Any, max_tokens: int = 96, batch_size: int = 8) -> Generator:
    from tunesmith.models.generate import GenerationSettings, generate

    settings = GenerationSettings(max_tokens=max_tokens)
    return lambda convs: [g.text for g in generate(model, tokenizer, convs, settings, batch_size=batch_size)]
