"""``multi``: a formula (``calculate_output``) over the scores of named graders.

The formula is parsed with ``ast`` and walked node by node; nothing is ever ``eval``-ed. Allowed, as in
OpenAI's multi grader: numbers, the graders' names, ``+ - * /``, ``^`` and ``**`` (power), ``%``,
parentheses, and the functions ``min max abs floor ceil exp sqrt log``. Anything else (attributes, calls of
other names, comparisons, strings) is refused when the grader is loaded, naming the part.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.base import Grade, Grader

_BIN: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}


class Formula:
    """A parsed ``calculate_output``; ``value(scores)`` computes it from ``{grader name: score}``."""

    def __init__(self, text: str, names: set[str], *, grader: str = "multi") -> None:
        self.text, self.grader = text, grader
        try:
            # ^ is power in OpenAI's formulas; as text, so it binds tighter than * (Python's ^ is xor, below +)
            self.tree = ast.parse(text.strip().replace("^", "**"), mode="eval").body
        except SyntaxError as exc:
            raise TunesmithError(
                f"Grader {grader!r}: calculate_output {text!r} is not a formula ({exc.msg}).",
                "Write e.g. '0.5 * exact + 0.5 * style' with the names of the graders.",
            ) from None
        self._check(self.tree, names)

    def value(self, scores: Mapping[str, float]) -> float:
        """The formula's value. Raises TunesmithError on a math error (division by zero, log of 0)."""
        try:
            return float(self._eval(self.tree, scores))
        except (ZeroDivisionError, ValueError, OverflowError) as exc:
            raise TunesmithError(
                f"Grader {self.grader!r}: calculate_output {self.text!r} failed for scores "
                f"{dict(scores)}: {exc}.",
                "Guard the formula (e.g. max(x, 1e-9) before log or division).",
            ) from None

    def _check(self, node: ast.AST, names: set[str]) -> None:
        ok = (
            (
                isinstance(node, ast.Constant)
                and isinstance(node.value, int | float)
                and not isinstance(node.value, bool)
            )
            or (isinstance(node, ast.Name) and node.id in names)
            or (isinstance(node, ast.BinOp) and type(node.op) in _BIN)
            or (isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY)
            or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCS
                and not node.keywords
                and node.args
            )
        )
        if not ok:
            part = ast.unparse(node)
            why = (
                f"{part!r} is not one of the graders ({', '.join(sorted(names))})"
                if isinstance(node, ast.Name)
                else f"{part!r} is not allowed"
            )
            raise TunesmithError(
                f"Grader {self.grader!r}: calculate_output {self.text!r}: {why}.",
                "Use numbers, grader names, + - * / ^ %, parentheses and min max abs floor ceil exp sqrt log.",
            )
        children = node.args if isinstance(node, ast.Call) else list(ast.iter_child_nodes(node))
        for child in children:
            if isinstance(child, ast.expr):  # operators and load contexts are checked with their parent
                self._check(child, names)

    def _eval(self, node: ast.AST, scores: Mapping[str, float]) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return scores[node.id]
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](self._eval(node.left, scores), self._eval(node.right, scores))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, scores))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCS[node.func.id](*(self._eval(a, scores) for a in node.args))


class MultiGrader(Grader):
    """OpenAI's ``multi``: each named grader scores the answer, the formula combines the scores."""

    def __init__(self, spec: Any, graders: dict[str, Grader]) -> None:
        super().__init__(spec)
        self.graders = graders
        self.formula = Formula(spec.calculate_output, set(graders), grader=spec.name)
        self.judge = any(g.judge for g in graders.values())

    @property
    def pass_threshold(self) -> float:
        t = self.spec.pass_threshold
        return 0.5 if t is None else float(t)

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        parts = {name: g.evaluate(samples, items) for name, g in self.graders.items()}
        return [
            self._grade(self.formula.value({name: grades[i].score for name, grades in parts.items()}))
            for i in range(len(samples))
        ]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "graders": {n: g.describe() for n, g in self.graders.items()}}

    def close(self) -> None:
        for g in self.graders.values():
            g.close()
