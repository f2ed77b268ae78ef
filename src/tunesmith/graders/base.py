"""The ``Grader`` interface every grader type implements, and ``Grade``, one graded answer."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.template import make_sample


@dataclass(frozen=True)
class Grade:
    """One answer's grade: ``score`` (a float; 0..1 for every type but ``score_model``, whose range is its
    own, and ``multi``, whose formula decides), ``passed`` (score at or above the pass threshold, or a
    passing label), ``label`` (label_model) and ``note`` (e.g. a judge reply that held no score)."""

    score: float
    passed: bool
    label: str | None = None
    note: str = ""


class Grader(ABC):
    """A grader built from a spec (``tunesmith.graders.spec``). Thread-compatible, not thread-safe.

    ``grade(sample, item) -> float`` scores one answer; ``grade_batch(samples, items) -> list[float]`` many
    (judges batch their requests, the python grader runs them in one sandboxed process); ``evaluate`` gives
    the full ``Grade`` objects. ``sample`` is an answer string or ``{"output_text": ...}``; ``item`` is the
    data row the answer is for (``{"input": ..., "reference": ..., ...}``).
    """

    judge = False  # True for graders that ask a model (their numbers need calibration)

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.type

    @property
    def pass_threshold(self) -> float:
        """Score at or above which an answer passes (string_check and label_model: 1)."""
        t = getattr(self.spec, "pass_threshold", None)
        return 1.0 if t is None else float(t)

    def grade(self, sample: Any, item: Mapping[str, Any]) -> float:
        """The score of one answer. Raises TunesmithError as ``evaluate`` does."""
        return self.evaluate([sample], [item])[0].score

    def grade_batch(self, samples: Sequence[Any], items: Sequence[Mapping[str, Any]]) -> list[float]:
        """The scores of ``samples`` (one per item, same order). Raises TunesmithError as ``evaluate``."""
        return [g.score for g in self.evaluate(samples, items)]

    def evaluate(self, samples: Sequence[Any], items: Sequence[Mapping[str, Any]]) -> list[Grade]:
        """One ``Grade`` per (sample, item).

        Raises:
            TunesmithError: when the lists differ in length, a template names a missing field, or the
                grader itself fails (a python grader's error or limit, a judge endpoint that cannot be reached).
        """
        if len(samples) != len(items):
            raise TunesmithError(
                f"Grader {self.name!r}: {len(samples)} samples for {len(items)} items.",
                "Pass one sample per item.",
            )
        if not samples:
            return []
        return self._evaluate([make_sample(s) for s in samples], [dict(i) for i in items])

    @abstractmethod
    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]: ...

    def describe(self) -> dict[str, Any]:
        """What the report shows about this grader: type, judge model, pass threshold, weak-judge note."""
        return {"type": self.kind, "pass_threshold": self.pass_threshold, "judge": self.judge}

    def close(self) -> None:
        """Release what the grader holds (a loaded judge model). Safe to call twice."""
        return None

    def _grade(self, score: float, **kw: Any) -> Grade:
        if not math.isfinite(score):
            raise TunesmithError(f"Grader {self.name!r} produced a non-finite score ({score}).")
        return Grade(float(score), score >= self.pass_threshold - 1e-12, **kw)
