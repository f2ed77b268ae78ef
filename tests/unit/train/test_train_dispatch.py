"""train/api.py: an explicit match from train.method to that method's ``run``, one keyword contract for all."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import get_args

import pytest

from tunesmith.config import Method, load_config
from tunesmith.errors import TunesmithError
from tunesmith.train import api

pytestmark = pytest.mark.unit

METHODS = get_args(Method)


def _cfg(method: str, tmp_path: Path):  # noqa: ANN202
    extra = [f"train.reward_model={tmp_path / 'rm'}"] if method in ("ppo", "rloo", "grpo") else []
    return load_config(
        None, ["model.name=tiny", f"train.method={method}", f"train.output_dir={tmp_path / 'runs'}", *extra]
    )


def test_every_method_has_the_contract_of_train() -> None:
    contract = inspect.signature(api.train)
    for method in METHODS:
        run = importlib.import_module(f"tunesmith.train.{method}").run
        got = inspect.signature(run)
        assert list(got.parameters) == list(contract.parameters), method
        for name, param in contract.parameters.items():
            assert (got.parameters[name].kind, got.parameters[name].default) == (param.kind, param.default), (
                method,
                name,
            )


@pytest.mark.parametrize("method", METHODS)
def test_train_calls_the_methods_own_run_with_every_keyword(method: str, tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[str, object, dict]] = []
    for other in METHODS:  # a recorder in place of each method's run, so a wrong branch shows up by name
        module = importlib.import_module(f"tunesmith.train.{other}")
        monkeypatch.setattr(module, "run", lambda cfg, _m=other, **kw: calls.append((_m, cfg, kw)) or _m)
    cfg = _cfg(method, tmp_path)

    def progress(event: dict) -> None: ...

    def stop() -> bool:
        return False

    got = api.train(cfg, resume=tmp_path / "r", force=True, on_progress=progress, should_stop=stop)
    assert got == method
    assert calls == [
        (method, cfg, {"resume": tmp_path / "r", "force": True, "on_progress": progress, "should_stop": stop})
    ]


def test_an_unknown_method_is_refused_by_name(tmp_path: Path) -> None:
    cfg = _cfg("sft", tmp_path)
    # past validation, as a future Method value without a branch would be
    cfg.train.__dict__["method"] = "kto"
    with pytest.raises(TunesmithError, match="train.method: kto is not a training method"):
        api.train(cfg)


@pytest.mark.parametrize("method", ["dpo", "reward", "ppo", "rloo", "grpo"])
def test_preference_methods_refuse_force_before_creating_a_run_folder(method: str, tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match=f"--force is not supported for method: {method}"):
        api.train(_cfg(method, tmp_path), force=True)
    assert not (tmp_path / "runs").exists()
