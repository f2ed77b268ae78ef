"""text_similarity's cosine metric with the embedded MiniLM (loads the model: an integration test)."""

from __future__ import annotations

import pytest

from tunesmith.graders import load_grader

pytestmark = pytest.mark.integration


def similar(metric: str) -> object:
    return load_grader(
        {
            "type": "text_similarity",
            "name": metric,
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference}}",
            "evaluation_metric": metric,
        }
    )


def test_text_similarity_cosine_with_minilm() -> None:
    g = similar("cosine")
    same = g.grade("Your refund arrives in five days.", {"reference": "Your refund arrives in five days."})
    near = g.grade(
        "The refund will reach you within five days.", {"reference": "Your refund arrives in five days."}
    )
    far = g.grade("The printer on floor three is jammed.", {"reference": "Your refund arrives in five days."})
    assert same == pytest.approx(1.0, abs=1e-5)
    assert far < near < same
