"""Config files that used to hurt: alias bombs, deep nesting, duplicate keys, numbers out of any sane range,
huge integers, configs on endless inputs (tunesmith/yamlsafe.py, the number bounds in tunesmith/config.py)."""

from __future__ import annotations

import os
import tracemalloc
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import ProjectConfig, load_config, validate_config_dict
from tunesmith.errors import TunesmithError
from tunesmith.yamlsafe import MAX_NODES, load_yaml

pytestmark = pytest.mark.unit

CASES = Path(__file__).parents[1] / "assets" / "cases"
runner = CliRunner()


def _refused(path: Path | None, overrides: list[str] | None = None) -> TunesmithError:
    with pytest.raises(TunesmithError) as exc:
        load_config(path, overrides)
    return exc.value


# --------------------------------------------------------------------------- cases


@pytest.mark.parametrize("name", ["bomb_str_field.yaml", "bomb_value.yaml"])
def test_yaml_alias_bomb_case_is_one_short_error_in_bounded_memory(name):
    """cases/yaml-alias-bomb: 530 bytes that took 4.7 GB and printed an 800 MB message."""
    tracemalloc.start()
    try:
        err = _refused(CASES / "yaml-alias-bomb" / name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "alias" in err.message and f"{MAX_NODES:,}" in err.message
    assert len(str(err)) < 400 and "\n" not in err.message
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_yaml_alias_bomb_case_through_the_cli_exits_1_with_one_line():
    res = runner.invoke(app, ["config", "validate", str(CASES / "yaml-alias-bomb" / "bomb_value.yaml")])
    assert res.exit_code == 1 and "line 13" in res.output


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("lr_inf.yaml", "train.lr: Input should be a finite number (got inf)"),
        ("hugeint_seq.yaml", "data.max_seq_len: Input should be less than or equal to 1048576"),
        ("dup_keys.yaml", "line 12: key 'model' appears twice in one mapping (first on line 1)"),
    ],
)
def test_config_wrong_acceptances_case_is_refused_naming_the_key(name, fragment):
    """cases/config-wrong-acceptances: each of the three used to print 'OK ... is valid'."""
    err = _refused(CASES / "config-wrong-acceptances" / name)
    assert fragment in err.message
    load_config(CASES / "config-wrong-acceptances" / "base.yaml")  # the same config without the fault


# --------------------------------------------------------------------------- second inputs of our own


def test_alias_bomb_in_a_mapping_and_in_an_override(tmp_path):
    lines = ["a0: &a0 {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9, q: 10}"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\nmodel:\n  name: *a6\n")
    assert "alias bomb" in _refused(p).message
    bomb = "[" + ", ".join(["&a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"] + ["*a"] * 20_000) + "]"
    assert "alias bomb" in _refused(None, [f"lora.target_modules={bomb}"]).message
    assert "holds it" in _refused(None, ["lora.target_modules=&a [*a]"]).message  # a loop, not a bomb


def test_aliases_used_plainly_still_work(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lora: &l {r: 8, lora_alpha: 16}\neval:\n  few_shot_k: 3\n")
    assert load_config(p).lora.r == 8
    merged = load_yaml("base: &b {r: 8, lora_alpha: 16}\nlora:\n  <<: *b\n  r: 4\n")
    assert merged["lora"] == {"r": 4, "lora_alpha": 16}  # a merge key may be overridden: not a duplicate


@pytest.mark.parametrize(
    "text",
    [
        "model:\n  name: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "model: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
        "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n",
    ],
    ids=["flow-sequence-10k", "flow-mapping-10k", "block-200"],
)
def test_deep_nesting_is_refused_before_the_recursion_limit(text, tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text(text)
    err = _refused(p)
    assert "nested more than 64 levels" in err.message and "line" in err.message


def test_duplicate_keys_nested_and_top_level(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1.0e-4\n  epochs: 2\n  lr: 1.0\n")
    assert "line 4: key 'lr' appears twice" in _refused(p).message
    p.write_text("data:\n  seed: 1\nlora:\n  r: 8\ndata:\n  seed: 2\n")
    assert "key 'data' appears twice" in _refused(p).message


def test_huge_integer_and_lone_surrogate_in_a_config(tmp_path):
    """bigint-json-500's config part: `config validate` on a 5,000-digit number is an error, not a traceback."""
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  seed: " + "9" * 5000 + "\n")
    res = runner.invoke(app, ["config", "validate", str(p)])
    assert res.exit_code == 1 and "4,300 digits" in res.output
    p.write_text('model:\n  name: "tiny\\ud800"\n')
    assert "model.name holds an unpaired surrogate" in _refused(p).message
    assert "4,300 digits" in _refused(None, ["train.seed=" + "9" * 5000]).message


def test_config_on_a_device_fifo_or_oversized_file_is_refused(tmp_path):
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    assert "device" in _refused(link).message
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert "FIFO" in _refused(fifo).message
    big = tmp_path / "big.yaml"
    big.write_text("model:\n  name: " + "x" * (2 << 20) + "\n")
    assert "input limit" in _refused(big).message


def test_bad_values_are_quoted_briefly(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  r: " + "x" * 100_000 + "\n")
    err = _refused(p)
    assert "lora.r" in err.message and len(err.message) < 400
    many = "lora:\n  target_modules: [" + ", ".join(["[1]"] * 500) + "]\n"
    p.write_text(many)
    assert len(_refused(p).message.splitlines()) <= 22  # header + 20 problems + "... and N more"


# --------------------------------------------------------------------------- bounds on every numeric field


def _numeric_fields() -> list[tuple[str, str, bool]]:
    """(section, field, is_float) for every int/float field of every section (unions with 'auto' included)."""
    out = []
    for section, info in ProjectConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, f in model.model_fields.items():
            kinds = _leaf_types(f.annotation)
            if (int in kinds or float in kinds) and bool not in kinds - {int, float}:
                out.append((section, name, float in kinds))
    return out


def _leaf_types(ann: typing.Any) -> set:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(ann)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return set().union(*(_leaf_types(a) for a in typing.get_args(ann)))
    if origin is None and isinstance(ann, type) and ann in (int, float, bool):
        return {ann}
    return set()


NUMERIC = _numeric_fields()


def test_the_walk_finds_the_numeric_fields():
    names = {f"{s}.{n}" for s, n, _ in NUMERIC}
    assert {"train.lr", "data.max_seq_len", "lora.r", "eval.max_new_tokens", "rag.k", "train.seed"} <= names
    assert len(NUMERIC) >= 30


@pytest.mark.parametrize(("section", "name", "is_float"), NUMERIC, ids=[f"{s}.{n}" for s, n, _ in NUMERIC])
def test_every_numeric_field_refuses_non_finite_and_absurd_values(section, name, is_float):
    for value in (float("inf"), float("-inf"), float("nan"), 10**30, -(10**30), 1e30):
        with pytest.raises(TunesmithError) as exc:
            validate_config_dict({section: {name: value}})
        assert f"{section}.{name}" in exc.value.message, (value, exc.value.message)


def test_lists_of_numbers_are_bounded_too():
    with pytest.raises(TunesmithError, match="lora.layers_to_transform.0"):
        validate_config_dict({"lora": {"layers_to_transform": [10**30]}})
    assert validate_config_dict({"lora": {"layers_to_transform": [0, 1]}}).lora.layers_to_transform == [0, 1]


def test_defaults_and_shipped_bounds_are_within_range():
    cfg = ProjectConfig()
    assert cfg.data.max_seq_len == 1024 and cfg.train.seed == 42
    validate_config_dict({"data": {"max_seq_len": 1 << 20}, "train": {"lr": 1.0, "seed": 2**32 - 1}})


@pytest.mark.parametrize(
    "override",
    ["data.train=a\x00b", "data.train=" + "x" * 5000, "model.name=" + "y" * 5000, "rag.index=" + "z" * 5000],
)
def test_unusable_paths_are_an_error_not_a_traceback(override):
    err = _refused(None, [override])
    assert "a path in it cannot be used" in err.message and len(err.message) < 400


def test_price_override_files_use_the_same_loader(tmp_path):
    from tunesmith.advisor.prices import load_prices

    p = tmp_path / "prices.yaml"
    p.write_text("gpus:\n  H100-80GB:\n    usd_per_hour: 10.0\n    usd_per_hour: 1.0\n")
    with pytest.raises(TunesmithError, match="usd_per_hour' appears twice"):
        load_prices(p)
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(TunesmithError):  # refused (not a regular file), never read
        load_prices(link)
