"""Template strings in graders: ``{{sample.output_text}}``, ``{{ item.reference }}``, ``{{item.meta.lang}}``.

As in OpenAI's graders, a reference is ``{{namespace.path}}``: ``sample`` is the model's answer
(``output_text``, and ``output_json`` when the answer is a JSON object), ``item`` is the data row. A pairwise
judge also has ``sample_a`` and ``sample_b``. Strings are inserted as they are, other values as JSON. A
reference to a missing key is an error naming it and the keys that exist (a grade never silently compares
against an empty string).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tunesmith.errors import TunesmithError

_REF = re.compile(r"\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}")


def render(template: str, context: Mapping[str, Any], *, grader: str = "grader") -> str:
    """``template`` with every ``{{ns.path}}`` replaced from ``context`` (``{"sample": ..., "item": ...}``).

    Raises:
        TunesmithError: when a reference names a namespace or key that ``context`` does not hold.
    """

    def one(m: re.Match[str]) -> str:
        return as_text(lookup(m.group(1), context, grader=grader))

    return _REF.sub(one, template)


def lookup(path: str, context: Mapping[str, Any], *, grader: str = "grader") -> Any:
    """The value at dotted ``path`` (``item.reference``, ``sample.output_json.city``, ``item.tags.0``)."""
    parts = path.split(".")
    node: Any = context
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            where = ".".join(parts[:i]) or "the template"
            keys = ", ".join(map(str, node)) if isinstance(node, Mapping) else type(node).__name__
            raise TunesmithError(
                f"Grader {grader!r}: {{{{{path}}}}} names {part!r}, which {where} does not have "
                f"(it has: {keys or 'nothing'}).",
                "Fix the template, or add the field to the data rows (item) / answers (sample).",
            )
    return node


def references(template: str) -> list[str]:
    """The dotted paths ``template`` refers to, in order."""
    return _REF.findall(template)


def as_text(value: Any) -> str:
    """A value as template text: strings as they are, None as '', anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def make_sample(sample: Any) -> dict[str, Any]:
    """``sample`` (an answer string or a dict with ``output_text``) in OpenAI's sample shape: ``output_text``,
    plus ``output_json`` when the text is a JSON object."""
    if isinstance(sample, str):
        sample = {"output_text": sample}
    if not isinstance(sample, Mapping):
        raise TunesmithError(
            f"A sample is an answer string or an object with output_text, got {type(sample).__name__}.",
            'Pass {"output_text": "..."}.',
        )
    out = dict(sample)
    text = out.get("output_text")
    if "output_json" not in out and isinstance(text, str) and text.strip().startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            out["output_json"] = parsed
    return out
