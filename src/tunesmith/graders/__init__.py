"""Graders: score a model's answers in OpenAI's grader JSON shapes (so existing grader files work).

Layer: imports base, ``data`` and ``models``; ``train`` (rewards), ``eval`` (judged evaluation) and above
import it.

The interface (stable; reinforcement fine-tuning uses it as a reward)::

    from tunesmith.graders import load_grader

    grader = load_grader("policy.json")          # a path, or a dict in OpenAI's grader shape
    grader.grade({"output_text": "Refunds take 5 days."}, {"reference": "5 days"})   # -> float
    grader.grade_batch(samples, items)            # -> list[float], one per (sample, item)
    grader.evaluate(samples, items)               # -> list[Grade(score, passed, label, note)]
    grader.name, grader.kind, grader.pass_threshold, grader.judge, grader.describe()
    grader.close()                                # frees a loaded judge model

``sample`` is an answer string or ``{"output_text": ...}`` (``output_json`` is added when the text is a JSON
object); ``item`` is the data row (templates read ``{{item.reference}}``, ``{{sample.output_text}}``).
Scores are floats: 0..1 for ``string_check``, ``text_similarity`` (cosine: -1..1), ``label_model`` and most
``python`` graders; ``score_model``'s own ``range``; ``multi``'s formula. Every failure is a
``TunesmithError`` naming the grader, the row and the fix.

Types: ``string_check`` / ``text_similarity`` (``text.py``), ``score_model`` / ``label_model`` and
tunesmith's ``pairwise`` (``judge.py``; ``load_grader`` returns a ``PairwiseJudge`` with ``compare`` for it),
``python`` (``python.py``, sandboxed), ``multi`` (``multi.py``). ``calibrate.py`` measures a judge against
human labels; ``summary.py`` turns grades into a report's mean and pass rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.graders.base import Grade, Grader
from tunesmith.graders.judge import PairwiseJudge, Verdicts
from tunesmith.graders.spec import EMBEDDED_JUDGE, parse_spec, read_spec

__all__ = [
    "EMBEDDED_JUDGE",
    "Grade",
    "Grader",
    "PairwiseJudge",
    "Verdicts",
    "build_grader",
    "load_grader",
]


def load_grader(source: str | Path | dict[str, Any], *, endpoint: str | None = None) -> Any:
    """A grader from a JSON file path or a parsed dict (OpenAI's shape). ``endpoint`` is the judges'
    OpenAI-compatible base URL (``--judge-url``) when the grader names none.

    Returns a ``Grader`` (a ``PairwiseJudge`` for ``type: pairwise``).

    Raises:
        TunesmithError: when the file is missing or not JSON, the grader's shape is wrong (naming the field),
            a python grader's source does not compile, or a formula uses something not allowed.
    """
    spec = parse_spec(source, source="grader") if isinstance(source, dict) else read_spec(Path(source))
    return build_grader(spec, endpoint=endpoint)


def build_grader(spec: Any, *, endpoint: str | None = None) -> Any:
    """The grader for a parsed spec (``tunesmith.graders.spec``)."""
    from tunesmith.graders import judge, multi, python, text

    kind = spec.type
    if kind == "string_check":
        return text.StringCheckGrader(spec)
    if kind == "text_similarity":
        return text.TextSimilarityGrader(spec)
    if kind == "score_model":
        return judge.ScoreModelGrader(spec, endpoint)
    if kind == "label_model":
        return judge.LabelModelGrader(spec, endpoint)
    if kind == "pairwise":
        return judge.PairwiseJudge(spec, endpoint)
    if kind == "python":
        return python.PythonGrader(spec)
    subs = {name: build_grader(s, endpoint=endpoint) for name, s in spec.graders.items()}
    for name, g in subs.items():
        if not isinstance(g, Grader):
            from tunesmith.errors import TunesmithError

            raise TunesmithError(
                f"Grader {spec.name!r}: {name!r} is a pairwise judge, which compares two answers; a multi "
                "grader combines graders of one answer.",
                "Use score_model or label_model inside multi.",
            )
    return multi.MultiGrader(spec, subs)
