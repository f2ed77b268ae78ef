"""Judge calibration: how well a grader agrees with human labels, with a confidence interval.

Labels file (JSON Lines, about 30 rows): the answer (``output_text`` or ``sample``), the item's fields
(``input``, ``reference``, ... or an ``item`` object) and ``human``: the person's verdict (a label of a
``label_model``, or ``true``/``false`` for pass/fail) or score (a number).

Agreement, chosen by what ``human`` holds:
- verdicts (labels or pass/fail): **Cohen's kappa** (scikit-learn ``cohen_kappa_score``) between the judge's
  and the person's verdicts, beside plain accuracy; kappa discounts agreement expected by chance
  (Cohen 1960), so a judge that always says "pass" on mostly-passing answers scores about 0, not 0.9;
- scores: **Spearman's rank correlation** (scipy ``spearmanr``) between judge and human scores.
The 95% interval is a percentile bootstrap over rows (2,000 resamples, seed 0; Efron & Tibshirani 1993);
resamples where the statistic is undefined (all verdicts equal) are dropped.

The result is written beside the grader (``policy.json`` -> ``policy.calibration.json``) with a fingerprint
of the grader, so ``tunesmith eval --grader policy.json`` shows it next to the judged numbers and the gate
can refuse a judge whose agreement is below ``eval.min_judge_agreement``; editing the grader (rubric, model)
makes the calibration stale, and it is then treated as missing.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.errors import TunesmithError
from tunesmith.graders.runs import read_predictions

N_BOOTSTRAP = 2000
MIN_ROWS = 10


class Calibration(BaseModel):
    """A judge's agreement with human labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grader: str
    fingerprint: str = Field(description="sha256 of the grader's spec; a changed grader makes this stale.")
    judge_model: str | None = None
    statistic: Literal["cohen_kappa", "spearman"]
    agreement: float = Field(description="Cohen's kappa (verdicts) or Spearman's rho (scores).")
    ci_low: float
    ci_high: float
    accuracy: float | None = Field(
        None, description="Share of rows where the verdicts agree (verdicts only)."
    )
    n: int
    labels_file: str = ""


def fingerprint(spec: Any) -> str:
    """A stable hash of a grader spec (its JSON, keys sorted)."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def calibrate(grader: Any, labels: Path) -> Calibration:
    """Grade every row of ``labels`` with ``grader`` and compare with the ``human`` column.

    Raises:
        TunesmithError: when the file has fewer than ``MIN_ROWS`` rows, a row has no ``human`` value, or the
            human values mix verdicts and scores.
    """
    rows = _rows(Path(labels))
    preds = read_predictions(Path(labels))
    samples = preds.answers["predictions"]
    items = [{k: v for k, v in item.items() if k != "human"} for item in preds.items]
    grades = grader.evaluate(samples, items)
    human = [r["human"] for r in rows]
    kinds = {"score" if isinstance(h, int | float) and not isinstance(h, bool) else "verdict" for h in human}
    if len(kinds) > 1:
        raise TunesmithError(
            f"{labels}: the human column mixes scores and verdicts.",
            "Give every row a number, or every row a label / true / false.",
        )
    model = grader.describe().get("model")
    common = {
        "grader": grader.name,
        "fingerprint": fingerprint(grader.spec),
        "judge_model": model,
        "n": len(rows),
        "labels_file": str(labels),
    }
    if kinds == {"score"}:
        judged = [g.score for g in grades]
        stat, lo, hi = _with_ci(_spearman, judged, [float(h) for h in human])
        return Calibration(statistic="spearman", agreement=stat, ci_low=lo, ci_high=hi, **common)
    judged_v, human_v = _verdicts(grader, grades, human, labels)
    stat, lo, hi = _with_ci(_kappa, judged_v, human_v)
    accuracy = sum(a == b for a, b in zip(judged_v, human_v, strict=True)) / len(human_v)
    return Calibration(
        statistic="cohen_kappa", agreement=stat, ci_low=lo, ci_high=hi, accuracy=accuracy, **common
    )


def calibration_path(grader_file: Path) -> Path:
    """Where the calibration of ``grader_file`` is kept: ``policy.json`` -> ``policy.calibration.json``."""
    grader_file = Path(grader_file)
    return grader_file.with_name(grader_file.stem + ".calibration.json")


def write_calibration(path: Path, cal: Calibration) -> Path:
    """Write ``cal`` as JSON to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(cal.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path


def read_calibration(grader_file: Path, spec: Any) -> Calibration | None:
    """The calibration kept beside ``grader_file``, or None when there is none or it is for another version
    of the grader (its fingerprint differs)."""
    path = calibration_path(grader_file)
    if not path.exists():
        return None
    try:
        cal = Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return cal if cal.fingerprint == fingerprint(spec) else None


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or "human" not in row:
            raise TunesmithError(
                f"{path}:{no}: no 'human' value.",
                'Each row holds the answer, the item and the person\'s verdict or score: {"output_text": ..., "human": "pass"}.',
            )
        rows.append(row)
    if len(rows) < MIN_ROWS:
        raise TunesmithError(
            f"{path}: {len(rows)} labelled rows; calibration needs at least {MIN_ROWS} (about 30 is good).",
            "Label more answers by hand.",
        )
    return rows


def _verdicts(grader: Any, grades: list[Any], human: list[Any], labels: Path) -> tuple[list[str], list[str]]:
    """The judge's and the person's verdicts as comparable strings: labels when the humans gave labels of a
    label_model, else pass/fail."""
    spec_labels = getattr(grader.spec, "labels", None)
    if spec_labels and all(isinstance(h, str) and h in spec_labels for h in human):
        return [g.label or "(none)" for g in grades], [str(h) for h in human]
    out = []
    for h in human:
        if isinstance(h, bool):
            out.append("pass" if h else "fail")
        elif isinstance(h, str) and h.strip().lower() in ("pass", "fail", "true", "false", "yes", "no"):
            out.append("pass" if h.strip().lower() in ("pass", "true", "yes") else "fail")
        elif isinstance(h, str) and spec_labels:
            out.append("pass" if h in grader.spec.passing_labels else "fail")
        else:
            raise TunesmithError(
                f"{labels}: human verdict {h!r} is neither one of the grader's labels nor pass/fail.",
                f"Use {', '.join(spec_labels) if spec_labels else 'true/false or pass/fail'}, or numbers for scores.",
            )
    return ["pass" if g.passed else "fail" for g in grades], out


def _kappa(a: list[Any], b: list[Any]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return math.nan  # one verdict everywhere: kappa is undefined
    return float(cohen_kappa_score(a, b))


def _kappa_fast(a: list[Any], b: list[Any]) -> float:
    """Cohen's kappa, the formula of ``cohen_kappa_score`` (unweighted) in plain numpy: the bootstrap calls it
    thousands of times, where scikit-learn's input checks cost milliseconds each (a test holds them equal)."""
    import numpy as np

    codes = {v: i for i, v in enumerate(sorted(set(a) | set(b), key=str))}
    k = len(codes)
    if k < 2:
        return math.nan
    x, y = np.array([codes[v] for v in a]), np.array([codes[v] for v in b])
    conf = np.bincount(x * k + y, minlength=k * k).reshape(k, k) / len(x)
    p_o = float(np.trace(conf))
    p_e = float(conf.sum(axis=1) @ conf.sum(axis=0))
    return math.nan if p_e >= 1 else (p_o - p_e) / (1 - p_e)


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def _with_ci(stat: Any, a: list[Any], b: list[Any]) -> tuple[float, float, float]:
    import numpy as np

    point = stat(a, b)
    if math.isnan(point):
        raise TunesmithError(
            "Agreement is undefined: the judge or the person gave one verdict (or one score) to every row.",
            "Label a mix of good and bad answers.",
        )
    rng = np.random.default_rng(0)
    n = len(a)
    boots = []
    resample = _kappa_fast if stat is _kappa else stat
    for _ in range(N_BOOTSTRAP):
        idx = rng.integers(0, n, n)
        v = resample([a[i] for i in idx], [b[i] for i in idx])
        if not math.isnan(v):
            boots.append(v)
    lo, hi = (
        (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if boots else (point, point)
    )
    return point, lo, hi
