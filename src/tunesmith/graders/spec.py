"""Grader files in OpenAI's grader JSON shapes, read and checked before anything runs.

The shapes follow OpenAI's fine-tuning/evals graders (the ``openai`` SDK's ``openai.types.graders``):
``string_check``, ``text_similarity``, ``score_model``, ``label_model``, ``python`` and ``multi``, with
``pass_threshold`` where OpenAI's eval testing criteria have it. tunesmith adds a few optional fields, each
named in its description (``base_url`` for a judge's endpoint, ``timeout_s``/``memory_mb`` for a python
grader) and one type of its own, ``pairwise`` (a judge that compares two answers). Unknown keys are errors
(naming the key and the grader), so a typo never silently changes a grade.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from tunesmith.errors import TunesmithError

_STRICT = ConfigDict(extra="forbid", frozen=True)
EMBEDDED_JUDGE = "smollm2-135m-instruct"
METRICS = (
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)


class Message(BaseModel):
    """One message of a judge's prompt; ``content`` may hold ``{{item.x}}`` / ``{{sample.output_text}}``."""

    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | dict[str, Any] | list[Any]
    type: Literal["message"] | None = None


class SamplingParams(BaseModel):
    """A judge's sampling settings (OpenAI's ``sampling_params``)."""

    model_config = _STRICT
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    max_completions_tokens: int | None = Field(None, ge=1, le=32768)
    reasoning_effort: str | None = None


class _Base(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=128)


class StringCheck(_Base):
    type: Literal["string_check"]
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarity(_Base):
    type: Literal["text_similarity"]
    input: str
    reference: str
    evaluation_metric: Literal[METRICS]  # type: ignore[valid-type]
    pass_threshold: float | None = Field(None, ge=0, le=1)


class _Judge(_Base):
    model: str = Field(
        EMBEDDED_JUDGE,
        description="The judge model. Without an endpoint (base_url, --judge-url, OPENAI_BASE_URL) a local "
        "alias or folder runs in-process; the default, the embedded SmolLM2-135M, is a weak judge.",
    )
    input: list[Message] = Field(min_length=1)
    sampling_params: SamplingParams | None = None
    base_url: str | None = Field(None, description="tunesmith: the judge's OpenAI-compatible endpoint.")


class ScoreModel(_Judge):
    type: Literal["score_model"]
    range: list[float] | None = Field(None, min_length=2, max_length=2)
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ScoreModel:
        lo, hi = self.score_range
        if not lo < hi:
            raise ValueError(f"range must be [low, high] with low < high, got {self.range}")
        if self.pass_threshold is not None and not lo <= self.pass_threshold <= hi:
            raise ValueError(f"pass_threshold {self.pass_threshold} is outside range [{lo}, {hi}]")
        return self

    @property
    def score_range(self) -> tuple[float, float]:
        lo, hi = self.range or [0.0, 1.0]
        return float(lo), float(hi)


class LabelModel(_Judge):
    type: Literal["label_model"]
    labels: list[str] = Field(min_length=2)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LabelModel:
        extra = [x for x in self.passing_labels if x not in self.labels]
        if extra:
            raise ValueError(f"passing_labels {extra} are not among labels {self.labels}")
        return self


class Pairwise(_Judge):
    """tunesmith: a judge shown two answers (``{{sample_a.output_text}}``, ``{{sample_b.output_text}}``)
    that replies A, B or tie. ``input`` is optional (a built-in rubric is used without it)."""

    type: Literal["pairwise"]
    input: list[Message] = Field(default_factory=list)  # type: ignore[assignment]


class Python(_Base):
    type: Literal["python"]
    source: str = Field(min_length=1)
    image_tag: str | None = None
    pass_threshold: float | None = None
    timeout_s: float = Field(5.0, gt=0, le=600, description="tunesmith: seconds one grade() call may take.")
    memory_mb: int = Field(1024, ge=64, le=65536, description="tunesmith: address-space limit, MiB.")


class Multi(_Base):
    type: Literal["multi"]
    graders: dict[str, GraderSpec]
    calculate_output: str = Field(min_length=1, max_length=2000)
    pass_threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_grader(cls, data: Any) -> Any:
        # OpenAI's SDK types ``graders`` as one grader object; its guide writes a name -> grader map.
        g = data.get("graders") if isinstance(data, dict) else None
        if isinstance(g, dict) and isinstance(g.get("type"), str):
            data = {**data, "graders": {str(g.get("name") or "grader"): g}}
        return data


GraderSpec = Annotated[
    StringCheck | TextSimilarity | ScoreModel | LabelModel | Pairwise | Python | Multi,
    Field(discriminator="type"),
]
Multi.model_rebuild()
_ADAPTER: TypeAdapter[Any] = TypeAdapter(GraderSpec)
TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi", "pairwise")


def parse_spec(data: Any, *, source: str = "grader") -> Any:
    """``data`` (a parsed grader JSON object) as a typed spec.

    Raises:
        TunesmithError: naming ``source``, the field and the fix when ``data`` is not a grader.
    """
    if not isinstance(data, dict):
        raise TunesmithError(
            f"{source}: a grader is a JSON object, got {type(data).__name__}.",
            'Write e.g. {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", '
            '"reference": "{{item.reference}}", "operation": "eq"}.',
        )
    if data.get("type") not in TYPES:
        raise TunesmithError(
            f"{source}: unknown grader type {data.get('type')!r}.", f"Use one of {', '.join(TYPES)}."
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p not in TYPES)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not in OpenAI's grader shape)"
        raise TunesmithError(
            f"{source}: grader {data.get('name')!r} ({data.get('type')}): field {where or '(top)'!r}: {msg}.",
            "See docs/graders.md for each grader type's fields.",
        ) from None


def read_spec(path: Path) -> Any:
    """The grader in the JSON file ``path`` (one grader object).

    Raises:
        TunesmithError: when the file is missing, not JSON (with the line), or not a grader.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunesmithError(f"Grader file {path} does not exist.", "Pass a grader JSON file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunesmithError(f"Cannot read grader file {path}: {exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TunesmithError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            "A grader file holds one JSON object in OpenAI's grader shape.",
        ) from None
    return parse_spec(data, source=str(path))
