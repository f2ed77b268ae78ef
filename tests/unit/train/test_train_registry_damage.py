"""A damaged run registry (torn pages, flipped bytes, garbage) never produces a traceback: every read
either works, with the types RunRecord promises, or is one TunesmithError naming the file."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.errors import TunesmithError
from tunesmith.train.registry import REGISTRY_FILE, RunRegistry

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("registry")
    reg = RunRegistry(runs)
    for i in range(25):
        reg.add(f"run{i}", runs / f"run{i}", "sft", "lora", "tiny")
        reg.set_status(f"run{i}", "completed")
    return runs


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1), st.binary(max_size=0)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("replace"), st.floats(0, 1), st.binary(max_size=256)),
)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(damage, min_size=1, max_size=4))
def test_damaged_registry_reads_or_fails_cleanly(pristine: Path, ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        shutil.copytree(pristine, runs)
        f = runs / REGISTRY_FILE
        raw = bytearray(f.read_bytes())
        for kind, where, junk in ops:
            pos = int(where * len(raw))
            if kind == "truncate":
                raw = raw[:pos]
            elif kind == "flip":
                raw[pos : pos + len(junk)] = junk
            else:
                raw = bytearray(junk)
        f.write_bytes(bytes(raw))
        reg = RunRegistry(runs)
        try:
            for r in reg.list():
                assert isinstance(r.run_id, str) and isinstance(r.status, str)
                time.localtime(r.created_at)  # what `runs list` shows
                assert r.final_loss is None or isinstance(r.final_loss, float)
        except TunesmithError as exc:
            assert str(f) in exc.message
        with contextlib.suppress(TunesmithError):  # a missing or damaged record is a clean error
            reg.get("run3")


def test_a_damaged_registry_names_the_file_and_the_fix(pristine: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(pristine, runs)
    f = runs / REGISTRY_FILE
    f.write_bytes(f.read_bytes()[: 4096 + 100])  # a torn write: the header survives, the pages do not
    with pytest.raises(TunesmithError) as info:
        RunRegistry(runs).list()
    assert str(f) in info.value.message and "Move the file aside" in (info.value.hint or "")
