"""Property tests: whatever YAML text a config file holds and whatever dotted overrides follow it,
`load_config` (what `config validate`, `train`, `eval` and the server's jobs call) either returns a config or
raises a TunesmithError with a bounded message: never another exception (a traceback for the user)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import ProjectConfig, load_config
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 20_000

SECTIONS = list(ProjectConfig.model_fields)
FIELDS = sorted({name for s in SECTIONS for name in ProjectConfig.model_fields[s].annotation.model_fields})  # type: ignore[union-attr]
DOTTED = [f"{s}.{n}" for s in SECTIONS for n in ProjectConfig.model_fields[s].annotation.model_fields]  # type: ignore[union-attr]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**80),
    st.floats(),  # inf and nan included
    st.text(max_size=20),
    st.sampled_from(["auto", "sft", "lora", "tiny", "all-linear", "zero-shot", "", "1e23", ".inf", "-1"]),
    st.sampled_from(["a\x00b", "x" * 5000, "d/" * 3000, "postgresql://u:p@h/db", "~", "..", "/dev/zero"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
keys = st.sampled_from(SECTIONS + FIELDS) | st.text(max_size=8)
documents = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=5) | values,
    max_size=6,
)

# hand-written fragments that stress the loader: anchors, aliases, merges, tags, duplicates, nesting, escapes
FRAGMENTS = [
    "a: &a [1, 2]\nb: *a\n",
    "<<: {model: {name: tiny}}\n",
    "model: !!python/object:os.system {}\n",
    "model: {name: tiny}\nmodel: {name: tiny}\n",
    "train: {lr: .nan, epochs: -.inf}\n",
    "data: " + "[" * 80 + "]" * 80 + "\n",
    "x: *undefined\n",
    'model: {name: "\\ud800"}\n',
    "train: {seed: " + "9" * 4400 + "}\n",
    "--- \n...\n--- {}\n",
    "\t- broken\n",
    "model:\n  - name: tiny\n",
    "? [a, b]\n: 1\n",
    "data: {train: !!binary aGVsbG8=}\n",
    "rag: {index: 3, docs: [1, 2]}\n",
    "eval: {json_schema: {type: object, x: &x [*x]}}\n",
]


def _yaml_texts() -> st.SearchStrategy[str]:
    dumped = documents.map(_dump)
    joined = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map("".join)
    return st.one_of(
        dumped, joined, st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    )


def _dump(doc: object) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, UnicodeError, ValueError):
        return "{}"


overrides = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED) | keys, st.text(max_size=30)),
        st.builds(lambda k, v: f"{k}={_dump(v).strip()}", st.sampled_from(DOTTED), values),
        st.builds(lambda k, f: f"{k}={f.strip()}", st.sampled_from(DOTTED), st.sampled_from(FRAGMENTS)),
        st.text(max_size=20),
    ),
    max_size=4,
)


def _load(text: str, items: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tunesmith.yaml"
        try:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        except UnicodeError:
            assume(False)
        try:
            cfg = load_config(path, items)
        except TunesmithError as exc:
            assert len(str(exc)) < MAX_MESSAGE
            return
    # accepted: every number in it is finite (the bounds' first rule)
    for section in SECTIONS:
        for value in getattr(cfg, section).model_dump().values():
            assert not (isinstance(value, float) and not math.isfinite(value))


@SETTINGS
@given(text=_yaml_texts(), items=overrides)
def test_any_yaml_text_and_overrides_give_a_config_or_a_tunesmith_error(text, items):
    _load(text, items)


@SETTINGS
@given(doc=documents)
def test_generated_documents_through_the_cli_never_trace_back(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(_dump(doc), encoding="utf-8")
        res = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert res.exit_code == 0 or isinstance(res.exception, TunesmithError | SystemExit), res.exception
