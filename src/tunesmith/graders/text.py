"""``string_check`` and ``text_similarity``: graders that compare an answer with a reference, no model asked.

string_check (score 1 or 0, OpenAI's operations): ``eq`` input equals reference, ``ne`` differs, ``like``
input contains reference, ``ilike`` contains it ignoring case.

text_similarity (score 0..1; cosine -1..1), each from a maintained library:
- ``fuzzy_match``: rapidfuzz ``fuzz.WRatio`` with ``utils.default_process`` / 100 (the fuzzy match of
  OpenAI's graders guide, whose python-grader example computes it this way);
- ``bleu``: sacrebleu ``sentence_bleu`` (its default exponential smoothing, 13a tokenizer) / 100;
- ``gleu``: nltk ``sentence_gleu`` (Wu et al. 2016) on whitespace tokens;
- ``rouge_1`` .. ``rouge_5``, ``rouge_l``: Google's ``rouge-score`` F-measure, no stemming (the default of
  Hugging Face ``evaluate``'s rouge);
- ``cosine``: cosine similarity of the embedded all-MiniLM-L6-v2 sentence embeddings (``minilm`` alias).
``meteor`` needs NLTK's WordNet data, which is fetched from the network at run time, so it is refused with
that reason.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.base import Grade, Grader
from tunesmith.graders.template import render


class StringCheckGrader(Grader):
    """OpenAI's ``string_check``: 1.0 when the operation holds, else 0.0."""

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        out = []
        for sample, item in zip(samples, items, strict=True):
            ctx = {"sample": sample, "item": item}
            a = render(self.spec.input, ctx, grader=self.name)
            b = render(self.spec.reference, ctx, grader=self.name)
            out.append(self._grade(1.0 if string_check(a, b, self.spec.operation) else 0.0))
        return out


def string_check(text: str, reference: str, operation: str) -> bool:
    """Whether ``operation`` (eq, ne, like, ilike) holds between ``text`` and ``reference``."""
    if operation == "eq":
        return text == reference
    if operation == "ne":
        return text != reference
    if operation == "like":
        return reference in text
    if operation == "ilike":
        return reference.casefold() in text.casefold()
    raise TunesmithError(f"Unknown string_check operation {operation!r}.", "Use eq, ne, like or ilike.")


class TextSimilarityGrader(Grader):
    """OpenAI's ``text_similarity``: a similarity metric between input and reference."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        if spec.evaluation_metric == "meteor":
            raise TunesmithError(
                f"Grader {spec.name!r}: evaluation_metric 'meteor' needs NLTK's WordNet data, which is "
                "downloaded from the network at run time; tunesmith runs offline.",
                "Use rouge_l, bleu, gleu, fuzzy_match or cosine.",
            )

    @property
    def pass_threshold(self) -> float:
        t = self.spec.pass_threshold
        return 0.5 if t is None else float(t)

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        pairs = []
        for sample, item in zip(samples, items, strict=True):
            ctx = {"sample": sample, "item": item}
            pairs.append(
                (
                    render(self.spec.input, ctx, grader=self.name),
                    render(self.spec.reference, ctx, grader=self.name),
                )
            )
        scores = similarity([a for a, _ in pairs], [b for _, b in pairs], self.spec.evaluation_metric)
        return [self._grade(s) for s in scores]


def similarity(texts: list[str], references: list[str], metric: str) -> list[float]:
    """``metric`` (see the module docstring) of each text against its reference."""
    if metric == "cosine":
        return _cosine(texts, references)
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return [
            fuzz.WRatio(a, b, processor=utils.default_process) / 100.0
            for a, b in zip(texts, references, strict=True)
        ]
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(effective_order=True)
        return [bleu.sentence_score(a, [b]).score / 100.0 for a, b in zip(texts, references, strict=True)]
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return [sentence_gleu([b.split()], a.split()) for a, b in zip(texts, references, strict=True)]
    if metric.startswith("rouge_"):
        key = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
        scorer = _rouge(key)
        return [scorer.score(b, a)[key].fmeasure for a, b in zip(texts, references, strict=True)]
    raise TunesmithError(f"Unknown evaluation_metric {metric!r}.")


@lru_cache(maxsize=8)
def _rouge(key: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([key], use_stemmer=False)


def _cosine(texts: list[str], references: list[str]) -> list[float]:
    model = _minilm()
    a = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(references, normalize_embeddings=True, convert_to_numpy=True)
    return [float(x) for x in (a * b).sum(axis=1)]


@lru_cache(maxsize=1)
def _minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    from tunesmith.models.load import minilm_dir

    return SentenceTransformer(str(minilm_dir()), device="cpu")
