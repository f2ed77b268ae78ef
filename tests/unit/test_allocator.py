"""allocator.preload_env: when the training process re-executes itself under jemalloc, and when not."""

from __future__ import annotations

import sys

import pytest

from tunesmith import allocator

pytestmark = pytest.mark.unit


@pytest.fixture
def linux_with_jemalloc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: "/opt/lib/libjemalloc.so.2")


def test_adds_jemalloc_in_front_of_an_existing_preload(linux_with_jemalloc):
    env = allocator.preload_env({"PATH": "/bin", "LD_PRELOAD": "/x/libfoo.so"})
    assert env == {"PATH": "/bin", "LD_PRELOAD": "/opt/lib/libjemalloc.so.2 /x/libfoo.so"}
    assert allocator.preload_env({})["LD_PRELOAD"] == "/opt/lib/libjemalloc.so.2"


@pytest.mark.parametrize(
    "env",
    [
        {"TUNESMITH_ALLOCATOR": "system"},  # switched off
        {"TUNESMITH_ALLOCATOR": "SYSTEM"},
        {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},  # already on it: no second exec, no loop
    ],
)
def test_nothing_to_change(linux_with_jemalloc, env):
    assert allocator.preload_env(env) is None


def test_not_installed_or_not_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: None)
    assert allocator.preload_env({}) is None
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: "/opt/lib/libjemalloc.so.2")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.preload_env({}) is None
