"""The layer plan of ``src/tunesmith`` (docs/DEVELOPING.md, "Layers"), checked on every import.

Every ``import`` and ``from ... import`` in the package is read with ``ast`` (function-local and relative ones
too, and ``importlib.import_module("tunesmith....")`` with a literal name), mapped to the top-level package it
lands in, and compared with ``PLAN``. A forbidden arrow fails the test with ``file:line``. ``PLAN`` is the one
place the plan lives; the table in docs/DEVELOPING.md is checked against it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tunesmith"
DOC = ROOT / "docs" / "DEVELOPING.md"

# The bottom layer: modules every package may use. Among themselves they import downwards only.
BASE = {
    "errors": set(),
    "paths": {"errors"},
    "textio": {"errors"},
    "yamlsafe": {"errors", "textio"},
    "config": {"errors", "paths", "textio", "yamlsafe"},
    "allocator": {"errors", "paths"},
    "progress": set(),  # the one progress helper for long steps (issue 17)
    "results": {"errors", "paths", "textio", "config"},
    "__init__": set(),  # tunesmith/__init__.py (the version)
}
_BASE = set(BASE)

# package -> the packages it may import (besides itself). Read bottom to top.
PLAN: dict[str, set[str]] = {
    **BASE,
    "data": _BASE,
    "models": _BASE | {"data"},
    "rag": _BASE | {"data", "models"},
    "graders": _BASE | {"data", "models"},  # issue 14: rewards for train, judged evaluation for eval
    "train": _BASE | {"data", "models", "rag", "graders"},
    "eval": _BASE | {"data", "models", "rag", "graders"},
    "advisor": _BASE | {"data", "models", "rag", "graders", "train", "eval"},
    "workflows": _BASE | {"data", "models", "rag", "graders", "train", "eval"},
    "serve": _BASE | {"data", "models", "rag", "graders", "train", "eval", "advisor", "workflows"},
    "cli": _BASE | {"data", "models", "rag", "graders", "train", "eval", "advisor", "workflows", "serve"},
    "__main__": {"cli"},
}


@dataclass(frozen=True)
class Arrow:
    source: str  # importing package
    target: str  # imported package
    file: Path
    line: int
    module: str  # what the statement names, e.g. tunesmith.train.loop

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source} -> {self.target} ({self.module})"


def package_of(rel: Path) -> str:
    """``train/loop.py`` -> ``train``; ``config.py`` -> ``config``; ``__init__.py`` -> ``__init__``."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_modules(tree: ast.AST, rel: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``tree``, wherever it sits in the file."""
    here = ["tunesmith", *rel.with_suffix("").parts][:-1]  # relative imports start from the file's package
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from tunesmith import x` names the submodule tunesmith.x when there is one
            out += (
                [(node.lineno, f"{base}.{a.name}") for a in node.names]
                if base == "tunesmith"
                else [(node.lineno, base)]
            )
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((node.lineno, arg.value))
            elif isinstance(arg, ast.JoinedStr):  # f"tunesmith.train.{method}": an arrow nobody can read
                out.append((node.lineno, "tunesmith.<dynamic>"))
    return out


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def arrows(src: Path) -> list[Arrow]:
    """Every import in ``src`` (a ``tunesmith`` package folder) that crosses into another top-level package."""
    top = {p.stem if p.is_file() else p.name for p in src.iterdir() if p.suffix == ".py" or p.is_dir()}
    found = []
    for file in sorted(src.rglob("*.py")):
        rel = file.relative_to(src)
        source = package_of(rel)
        for line, module in imported_modules(ast.parse(file.read_text(encoding="utf-8"), str(file)), rel):
            parts = module.split(".")
            if parts[0] != "tunesmith":
                continue
            target = (
                parts[1] if len(parts) > 1 and (parts[1] in top or parts[1] == "<dynamic>") else "__init__"
            )
            if target != source:
                found.append(Arrow(source, target, file, line, module))
    return found


def violations(src: Path, plan: dict[str, set[str]]) -> list[str]:
    """``file:line: a -> b (module)`` for every arrow ``plan`` forbids, and every package it does not know."""
    bad = []
    for p in sorted({package_of(f.relative_to(src)) for f in src.rglob("*.py")} - set(plan)):
        bad.append(
            f"{src / p}: package {p!r} is not in the layer plan (add it to PLAN and docs/DEVELOPING.md)"
        )
    for a in arrows(src):
        if a.source in plan and a.target not in plan[a.source]:
            bad.append(str(a))
    return bad


def test_every_import_in_src_follows_the_layer_plan() -> None:
    bad = violations(SRC, PLAN)
    assert not bad, "imports the layer plan forbids:\n" + "\n".join(bad)


def test_the_plan_has_no_cycles() -> None:
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(p: str, path: list[str]) -> None:
        assert seen.get(p) != 1, "cycle in PLAN: " + " -> ".join([*path, p])
        if seen.get(p) == 2:
            return
        seen[p] = 1
        for q in sorted(PLAN[p]):
            visit(q, [*path, p])
        seen[p] = 2

    for p in PLAN:
        visit(p, [])


def test_the_checker_names_file_and_line_of_a_forbidden_import(tmp_path: Path) -> None:
    src = tmp_path / "tunesmith"
    for folder in ("models", "train", "eval"):
        (src / folder).mkdir(parents=True)
        (src / folder / "__init__.py").write_text("")
    (src / "errors.py").write_text("class TunesmithError(Exception): ...\n")
    (src / "train" / "loop.py").write_text(
        "from tunesmith.models import load\nfrom tunesmith.errors import X\n"
    )
    (src / "models" / "load.py").write_text(
        '"""Loads models."""\n\n\ndef load():\n    from tunesmith.train.loop import fit  # forbidden\n'
    )
    (src / "eval" / "run.py").write_text("from ..train import loop\nfrom . import metrics\n")
    assert violations(src, {"errors": set(), **{k: PLAN[k] for k in ("models", "train", "eval")}}) == [
        f"{src / 'eval' / 'run.py'}:1: eval -> train (tunesmith.train)",
        f"{src / 'models' / 'load.py'}:5: models -> train (tunesmith.train.loop)",
    ]


def test_the_checker_sees_dynamic_imports_and_unknown_packages(tmp_path: Path) -> None:
    src = tmp_path / "tunesmith"
    (src / "train").mkdir(parents=True)
    (src / "gadgets").mkdir()
    (src / "train" / "api.py").write_text(
        "import importlib\n\n\ndef run(m):\n    return importlib.import_module(f'tunesmith.train.{m}')\n"
    )
    (src / "gadgets" / "x.py").write_text("import tunesmith.train.api\n")
    bad = violations(src, {"train": set()})
    assert bad == [
        f"{src / 'gadgets'}: package 'gadgets' is not in the layer plan (add it to PLAN and docs/DEVELOPING.md)",
        f"{src / 'train' / 'api.py'}:5: train -> <dynamic> (tunesmith.<dynamic>)",
    ]


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    src = tmp_path / "tunesmith"
    (src / "models").mkdir(parents=True)
    (src / "train").mkdir()
    (src / "train" / "loop.py").write_text("from tunesmith.models.load import load\nfrom . import packing\n")
    (src / "models" / "load.py").write_text("import torch\n")
    assert violations(src, {"models": set(), "train": {"models"}}) == []
    assert [str(a).split(": ", 1)[1] for a in arrows(src)] == ["train -> models (tunesmith.models.load)"]


def test_docs_mirror_the_plan() -> None:
    """docs/DEVELOPING.md's layer table lists, per package, exactly what PLAN allows (the base as ``base``)."""
    rows = re.findall(r"^\| `([\w_]+)` \| ([^|]*) \|", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    documented = {}
    for pkg, allowed in rows:
        names = set(re.findall(r"`([\w_]+)`", allowed))
        documented[pkg] = names | (_BASE if re.search(r"\bbase\b", allowed) else set())
    expected = {p: PLAN[p] for p in PLAN if p not in BASE}
    assert {p: documented.get(p) for p in expected} == expected
